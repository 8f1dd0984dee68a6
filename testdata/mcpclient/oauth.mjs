// An MCP client that signs in by itself: the official TypeScript SDK's own
// OAuth support (its auth() flow, through StreamableHTTPClientTransport's
// authProvider) against idflow's /mcp, with no token given to it.
//
//   node oauth.mjs <mcp url> dcr
//   node oauth.mjs <mcp url> cimd <client metadata document url>
//
// dcr registers the client dynamically (RFC 7591); cimd names it by the URL
// of its Client ID Metadata Document, which must list
// http://127.0.0.1/callback (any port: RFC 8252). The browser step is the
// caller's: the client prints {"authorize": url} and waits for the
// redirect to its loopback callback. Then it calls whoami, refreshes its
// tokens with the SDK (the refresh token rotates), calls whoami again, and
// prints {"result": {...}}.
import http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, mode, metadataUrl] = process.argv.slice(2);
if (!url || (mode !== "dcr" && mode !== "cimd") || (mode === "cimd" && !metadataUrl)) {
  console.error("usage: node oauth.mjs <mcp url> dcr | cimd <metadata url>");
  process.exit(2);
}

// The loopback redirect target (RFC 8252): the browser lands here.
let gotRedirect;
const redirected = new Promise((resolve) => { gotRedirect = resolve; });
const server = http.createServer((req, res) => {
  const u = new URL(req.url, "http://127.0.0.1");
  if (u.pathname !== "/callback") {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "Content-Type": "text/plain" }).end("Signed in; you may close this window.");
  gotRedirect(u.searchParams);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const redirectUrl = `http://127.0.0.1:${server.address().port}/callback`;

// An in-memory OAuthClientProvider, as the SDK documents it.
const store = {};
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: "idflow TypeScript SDK test client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientMetadataUrl: mode === "cimd" ? metadataUrl : undefined,
  state() { return "ts-state-" + Math.random().toString(36).slice(2); },
  clientInformation() { return store.client; },
  saveClientInformation(c) { store.client = c; },
  tokens() { return store.tokens; },
  saveTokens(t) { store.tokens = t; },
  redirectToAuthorization(u) { console.log(JSON.stringify({ authorize: u.href })); },
  saveCodeVerifier(v) { store.verifier = v; },
  codeVerifier() { return store.verifier; },
  saveDiscoveryState(s) { store.discovery = s; },
  discoveryState() { return store.discovery; },
};

async function connect() {
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const client = new Client({ name: "idflow-ts-oauth-test-client", version: "1.0.0" });
  await client.connect(transport);
  return { client, transport };
}

async function whoami(client) {
  const res = await client.callTool({ name: "whoami", arguments: {} });
  return res.structuredContent?.user_id;
}

const out = { mode, client_id: undefined, user_id: undefined, refreshed_user_id: undefined, rotated: false, tools: [] };
try {
  let conn;
  try {
    conn = await connect();
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    const params = await redirected;
    if (params.get("error")) throw new Error(`authorization refused: ${params.get("error")}: ${params.get("error_description")}`);
    const t = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    await t.finishAuth(params.get("code"));
    conn = await connect();
  }
  out.client_id = store.client?.client_id;
  out.user_id = await whoami(conn.client);
  out.tools = (await conn.client.listTools()).tools.map((t) => t.name).sort();
  await conn.client.close();

  // Refresh with the SDK itself: the refresh token must rotate.
  const before = store.tokens.refresh_token;
  if ((await auth(provider, { serverUrl: new URL(url) })) !== "AUTHORIZED") throw new Error("refresh did not authorize");
  out.rotated = Boolean(store.tokens.refresh_token) && store.tokens.refresh_token !== before;
  const again = await connect();
  out.refreshed_user_id = await whoami(again.client);
  await again.client.close();
  console.log(JSON.stringify({ result: out }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.stack || e) }));
  process.exitCode = 1;
} finally {
  server.close();
}
