// Parse the Mermaid block of a Markdown file with Mermaid's own parser and print what it read,
// as JSON: {vertices: {id: {text, classes, type}}, edges: [{start, end, text, stroke}], subgraphs}.
// Exit 1 with the parser's message when the block does not parse. Used by tests/test_topology.py.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

// Mermaid sanitizes labels with DOMPurify, which needs a DOM.
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

const markdown = readFileSync(process.argv[2], "utf8");
const block = markdown.match(/```mermaid\n([\s\S]*?)```/);
if (!block) {
  console.error("no ```mermaid block");
  process.exit(1);
}
let diagram;
try {
  diagram = await mermaid.mermaidAPI.getDiagramFromText(block[1]);
} catch (err) {
  console.error(String(err?.message ?? err));
  process.exit(1);
}
const vertices = {};
for (const [id, v] of diagram.db.getVertices()) {
  vertices[id] = { text: v.text, classes: v.classes, type: v.type };
}
console.log(
  JSON.stringify({
    type: diagram.type,
    vertices,
    edges: diagram.db.getEdges().map((e) => ({ start: e.start, end: e.end, text: e.text, stroke: e.stroke })),
    subgraphs: diagram.db.getSubGraphs().map((s) => ({ id: s.id, title: s.title, nodes: s.nodes })),
  }),
);
