// An independent MCP client for idflow's tests: the official TypeScript SDK
// over Streamable HTTP, with a bearer token. It shares no code with idflow.
//
//   IDFLOW_MCP_TOKEN=<jwt> node client.mjs <mcp url> <marker> [<victim user id>]
//
// It lists the tools, calls a few, and prints one JSON document:
//   {"session": bool, "tools": [names], "calls": {name: {isError, structured, text}}}
// add_fact is called with a user_id argument naming the victim: idflow must
// ignore it. The token is read from the environment so it never shows in a
// process list.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, marker, victim] = process.argv.slice(2);
const token = process.env.IDFLOW_MCP_TOKEN;
if (!url || !marker || !token) {
  console.error("usage: IDFLOW_MCP_TOKEN=<jwt> node client.mjs <mcp url> <marker> [<victim user id>]");
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "idflow-ts-test-client", version: "1.0.0" });
await client.connect(transport);

const out = { session: Boolean(transport.sessionId), tools: [], calls: {} };
const listed = await client.listTools();
out.tools = listed.tools.map((t) => t.name).sort();

async function call(name, args) {
  const r = await client.callTool({ name, arguments: args });
  const text = (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  out.calls[name] = { isError: Boolean(r.isError), structured: r.structuredContent ?? null, text };
}

await call("whoami", {});
const factArgs = { content: `a fact about ${marker}` };
if (victim) factArgs.user_id = victim;
await call("add_fact", factArgs);
await call("search_memory", { query: marker, limit: 50 });
await call("send_message", { content: `hello ${marker}` });
await call("list_sessions", { limit: 200 });
await call("list_connections", {});

await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
