#!/usr/bin/env -S python3 -S
"""Fake ``semanage fcontext`` (policycoreutils-python-utils): the local file-context rules.

``semanage fcontext -a|-m -t TYPE [-f FTYPE] [-s SEUSER] [-r RANGE] FILE_SPEC``,
``-d [-f FTYPE] FILE_SPEC``, ``-l [-C] [-n]`` and ``-D``, long forms too. Rules are kept in the
order they were added (state ``fcontext.json``); the fake ``restorecon`` applies them
(``selabel.wanted_label``). The policy's own rules are ``selabel.policy_rules()``.

As semanage does: a rule whose (spec, file type) exists, locally or in the policy, cannot be added
("ValueError: File context for SPEC already defined", exit 1); ``-m`` of a policy rule adds a local
one; ``-m``/``-d`` of an unknown spec: "... is not defined"; ``-d`` of a policy rule: "... is defined
in policy, cannot be deleted"; a type outside the policy's file types: "Type T is invalid, must be
a file or device type". ``-l`` prints seobject's format (``%-50s %-18s %s`` rows, context with a
trailing space, a heading and a blank line unless ``-n``; nothing when there are no rules).
Argument errors exit 2 with argparse's usage. Works with SELinux disabled, as the real one does
(it edits the policy store). Other semanage subcommands are not modelled (exit 2).
"""

from __future__ import annotations

import re

import fakelib
import selabel

SUBCOMMANDS = (
    "import,export,login,user,port,ibpkey,ibendport,interface,module,node,fcontext,boolean,permissive,dontaudit"
)
USAGE_MAIN = f"usage: semanage [-h]\n                {{{SUBCOMMANDS}}}\n                ..."
USAGE_FCONTEXT = (
    "usage: semanage fcontext [-h] [-n] [-N] [-S STORE] [ --add ( -t TYPE -f FTYPE -r RANGE -s SEUSER | "
    "-e EQUAL ) FILE_SPEC | --delete ( -t TYPE -f FTYPE | -e EQUAL ) FILE_SPEC | --deleteall  | --extract  | "
    "--list [-C] | --modify ( -t TYPE -f FTYPE -r RANGE -s SEUSER | -e EQUAL ) FILE_SPEC ]"
)
ACTIONS = {
    "-a": "add", "--add": "add", "-m": "modify", "--modify": "modify", "-d": "delete",
    "--delete": "delete", "-l": "list", "--list": "list", "-D": "deleteall", "--deleteall": "deleteall",
}  # fmt: skip
FLAGS = {"-C": "locallist", "--locallist": "locallist", "-n": "noheading", "--noheading": "noheading"}
FLAGS |= {"-N": "noreload", "--noreload": "noreload"}
VALUED = {"-t": "type", "--type": "type", "-f": "ftype", "--ftype": "ftype", "-s": "seuser"}
VALUED |= {"--seuser": "seuser", "-r": "range", "--range": "range", "-S": "store", "--store": "store"}
ACTION_OPTIONS = "-a/--add -d/--delete -m/--modify -l/--list -E/--extract -D/--deleteall"


def usage_error(message: str) -> None:
    fakelib.fail(f"{USAGE_FCONTEXT}\nsemanage fcontext: error: {message}", 2)


def value_error(message: str) -> None:
    fakelib.fail(f"ValueError: {message}", 1)


def parse(argv: list[str]) -> dict:
    args: dict = {"action": None, "spec": None, "locallist": False, "noheading": False, "type": "", "ftype": "a"}
    args |= {"seuser": "", "range": ""}
    i = 0
    while i < len(argv):
        arg = argv[i]
        # Short flags combine as argparse allows (-lC); a valued option takes the next word or =VALUE.
        for option in [f"-{c}" for c in arg[1:]] if re.fullmatch(r"-[a-zA-Z]{2,}", arg) else [arg]:
            name, equals, value = option.partition("=")
            if option in ACTIONS:
                if args["action"] not in (None, ACTIONS[option]):
                    usage_error(f"argument {option}: not allowed with argument --{args['action']}")
                args["action"] = ACTIONS[option]
            elif option in FLAGS:
                args[FLAGS[option]] = True
            elif name in VALUED:
                if not equals:
                    if i + 1 >= len(argv):
                        usage_error(f"argument {name}: expected one argument")
                    i, value = i + 1, argv[i + 1]
                args[VALUED[name]] = value
            elif option.startswith("-") and option != "-":
                usage_error(f"unrecognized arguments: {arg}")
            elif args["spec"] is None:
                args["spec"] = option
            else:
                usage_error(f"unrecognized arguments: {option}")
        i += 1
    if args["action"] is None:
        usage_error(f"one of the arguments {ACTION_OPTIONS} is required")
    if args["ftype"] not in selabel.FTYPES:
        usage_error(f"argument -f/--ftype: invalid choice: '{args['ftype']}'")
    args["ftype"] = selabel.FTYPES[args["ftype"]]
    return args


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        fakelib.fail(f"{USAGE_MAIN}\nsemanage: error: the following arguments are required: subcommand", 2)
    if argv[0] not in SUBCOMMANDS.split(","):
        choices = ", ".join(f"'{s}'" for s in SUBCOMMANDS.split(","))
        error = f"argument subcommand: invalid choice: '{argv[0]}' (choose from {choices})"
        fakelib.fail(f"{USAGE_MAIN}\nsemanage: error: {error}", 2)
    if argv[0] != "fcontext":
        fakelib.fail(f"semanage {argv[0]}: not modelled by the virtfleet fake (only fcontext is)", 2)
    args = parse(argv[1:])
    action = args["action"]
    # seobject's handle_opts: options that conflict with the action, then those it needs (stdout, exit 2).
    if action in ("add", "modify", "delete", "deleteall") and args["locallist"]:
        print(f"{action} option can not be used with --locallist")
        return 2
    needed = {"add": ("type", "spec"), "modify": ("type", "spec"), "delete": ("spec",)}.get(action, ())
    for name in needed:
        if not args[name]:
            print(f"{'file_spec' if name == 'spec' else name} option is needed for {action}")
            return 2
    rules = selabel.local_rules()
    if action == "list":
        return list_rules(rules, local=args["locallist"], heading=not args["noheading"])
    if action == "deleteall":
        selabel.save_local_rules([])
        return 0
    spec, ftype = args["spec"], args["ftype"]
    validate(spec, args["type"])
    index = next((i for i, r in enumerate(rules) if (r["spec"], r["ftype"]) == (spec, ftype)), None)
    in_policy = (spec, ftype) in selabel.policy_rules()
    if action == "add":
        if index is not None or in_policy:
            value_error(f"File context for {spec} already defined")
        label = selabel.context(args["type"], args["seuser"] or "system_u", args["range"] or "s0")
        rules.append({"spec": spec, "ftype": ftype, "context": label})
    elif action == "modify":
        if index is None and not in_policy:
            value_error(f"File context for {spec} is not defined")
        old = rules[index]["context"] if index is not None else selabel.policy_rules()[(spec, ftype)]
        user, role, _, level = old.split(":", 3)
        new = ":".join([args["seuser"] or user, role, args["type"], args["range"] or level])
        if index is None:
            rules.append({"spec": spec, "ftype": ftype, "context": new})
        else:
            rules[index]["context"] = new
    else:
        if index is None:
            if in_policy:
                value_error(f"File context for {spec} is defined in policy, cannot be deleted")
            value_error(f"File context for {spec} is not defined")
        del rules[index]
    selabel.save_local_rules(rules)
    return 0


def validate(spec: str, type_: str) -> None:
    if spec == "" or "\n" in spec:
        value_error("Invalid file specification")
    if " " in spec:
        value_error("File specification can not include spaces")
    if type_ and type_ not in selabel.FILE_TYPES:
        value_error(f"Type {type_} is invalid, must be a file or device type")
    try:
        re.compile(spec)
    except re.error:  # libsemanage rejects it when it rebuilds file_contexts (message simplified)
        value_error(f"Could not add file context for {spec}")


def list_rules(rules: list[dict], *, local: bool, heading: bool) -> int:
    table = {} if local else dict(selabel.policy_rules())
    table |= {(r["spec"], r["ftype"]): r["context"] for r in rules}
    if table:
        if heading:
            print(f"{'SELinux fcontext':<50} {'type':<18} Context\n")
        for (spec, ftype), label in sorted(table.items()):
            print(f"{spec:<50} {ftype:<18} {label} ")
    return 0


if __name__ == "__main__":
    fakelib.run(main)
