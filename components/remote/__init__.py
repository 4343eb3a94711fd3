"""How a script reaches a machine: ``scripts`` renders a step (its create/delete scripts and files,
pure), ``step`` turns it into the CopyToRemote/Command pair, ``connection`` gives each machine its SSH
connection with the pinned host key, ``recorded_files`` records files that travel another way (cloud-init
seeds inside libvirt resources) so the plan and the policy pack see them."""
