// The official TypeScript SDK client meeting a tool that needs a downstream
// connection (URL-mode elicitation, MCP 2025-11-25), for idflow's tests.
//
//   IDFLOW_MCP_TOKEN=<jwt> node connect.mjs <mcp url> <provider> <url|none>
//
// With "url" the client declares URL elicitation; with "none" it declares
// no elicitation. It calls downstream_get {provider, path: "/whoami"} once
// and prints one JSON document:
//   {"elicitations": [{mode, url, elicitationId, message}]}  (error -32042)
//   {"isError": bool, "structured": ..., "text": "..."}      (a tool result)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema, UrlElicitationRequiredError } from "@modelcontextprotocol/sdk/types.js";

const [url, provider, mode] = process.argv.slice(2);
const token = process.env.IDFLOW_MCP_TOKEN;
if (!url || !provider || !["url", "none"].includes(mode) || !token) {
  console.error("usage: IDFLOW_MCP_TOKEN=<jwt> node connect.mjs <mcp url> <provider> <url|none>");
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: "idflow-ts-connect-client", version: "1.0.0" },
  mode === "url" ? { capabilities: { elicitation: { url: {} } } } : {},
);
if (mode === "url") {
  // idflow answers URL elicitation as an error of the call, never as a request.
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "decline" }));
}
await client.connect(transport);

let out;
try {
  const r = await client.callTool({ name: "downstream_get", arguments: { provider, path: "/whoami" } });
  const text = (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  out = { isError: Boolean(r.isError), structured: r.structuredContent ?? null, text };
} catch (err) {
  if (!(err instanceof UrlElicitationRequiredError)) throw err;
  out = { elicitations: err.elicitations };
}

await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
