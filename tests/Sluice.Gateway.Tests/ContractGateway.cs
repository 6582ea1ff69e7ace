using System.Net.Sockets;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// One gateway process for the contract tests that do not change its configuration, in front of a python3-websockets
/// backend and a node <c>ws</c> backend. Each test uses its own route, so the tests do not see each other's state.
/// </summary>
public sealed class ContractGateway : IAsyncLifetime
{
    public const string AdminKey = "admin-secret-for-tests";
    public const string JwtSecret = "a-test-secret-of-at-least-32-bytes!!";

    private readonly ConfigFolder _folder = new();

    public GatewayProcess Gateway { get; private set; } = null!;

    public ExternalPeer Python { get; private set; } = null!;

    public ExternalPeer Node { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Python = await ExternalPeer.StartServerAsync(PeerKind.Python);
        Node = await ExternalPeer.StartServerAsync(PeerKind.Node);
        var py = Python.Authority;
        var deadPort = ClosedPort();
        _folder.Write("""{ "type": "object", "required": ["text"], "properties": { "text": { "type": "string" } } }""", "chat.schema.json");
        _folder.Write("(message, context) => { if (message.text === 'boom') throw new Error('boom'); return message; }", "throws.js");
        var config = _folder.Write($$"""
            {
              // Every route of the contract, against real non-.NET backends.
              "limits": { "maxMessageBytes": 1048576 },
              "admin": { "apiKey": "env:SLUICE_TEST_ADMIN_KEY" },
              "routes": [
                { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["max-64k"] },
                { "path": "/topics", "handler": { "type": "pubsub" } },
                { "path": "/secure-topics", "handler": { "type": "pubsub" }, "upgrade": ["api-key"] },
                { "path": "/py", "proxy": { "target": "ws://{{py}}/echo" } },
                { "path": "/node", "proxy": { "target": "ws://{{Node.Authority}}/echo" } },
                { "path": "/headers/{room}", "proxy": { "target": "ws://{{py}}/headers/${params.room}?user=${query.user}", "forwardHeaders": ["X-Request-Id"] }, "upgrade": ["api-key"] },
                { "path": "/backend-closes", "proxy": { "target": "ws://{{py}}/close/4001" } },
                { "path": "/backend-dies", "proxy": { "target": "ws://{{py}}/die" } },
                { "path": "/backend-down", "proxy": { "target": "ws://127.0.0.1:{{deadPort}}/", "connectTimeoutMs": 2000 } },
                { "path": "/origin", "handler": { "type": "echo" }, "upgrade": ["origins"] },
                { "path": "/jwt", "handler": { "type": "echo" }, "upgrade": ["jwt"] },
                { "path": "/limited", "handler": { "type": "echo" }, "upgrade": ["two-per-minute"] },
                { "path": "/chat", "proxy": { "target": "ws://{{py}}/echo" },
                  "inbound": ["chat-schema", "redact-secrets", "mask-card", "per-action-rate"],
                  "outbound": ["drop-internal", "stamp"] },
                { "path": "/schema-close", "handler": { "type": "echo" }, "inbound": ["schema-close"] },
                { "path": "/filter-close", "handler": { "type": "echo" }, "inbound": ["filter-close"] },
                { "path": "/throws", "handler": { "type": "echo" }, "inbound": ["throws"] },
                { "path": "/reply-rate", "handler": { "type": "echo" }, "inbound": ["per-user-rate"] },
              ],
              "policies": {
                "api-key": { "type": "api-key", "options": { "header": "X-Api-Key", "query": "apikey",
                             "keys": [ { "key": "env:SLUICE_TEST_ALICE_KEY", "subject": "alice" }, { "key": "k-bob", "subject": "bob" } ] } },
                "origins": { "type": "origin", "options": { "allow": ["https://app.example.com"] } },
                "jwt": { "type": "jwt", "options": { "signingKey": "{{JwtSecret}}" } },
                "two-per-minute": { "type": "connection-rate-limit", "options": { "permits": 2, "perSeconds": 60, "partitionBy": "ip" } },
                "max-64k": { "type": "size-limit", "options": { "maxBytes": 65536, "action": "close" } },
                "chat-schema": { "type": "json-schema", "options": { "schemaFile": "chat.schema.json", "action": "reply" } },
                "schema-close": { "type": "json-schema", "options": { "schemaFile": "chat.schema.json", "action": "close" } },
                "redact-secrets": { "type": "json-redact", "options": { "paths": ["/password"], "mode": "remove" } },
                "mask-card": { "type": "json-redact", "options": { "paths": ["/card/number", "/absent"], "mode": "mask" } },
                "per-action-rate": { "type": "rate-limit", "when": { "path": "/action", "equals": "send" },
                                     "options": { "permits": 1, "perSeconds": 60, "burst": 1, "partitionBy": "connection", "action": "reply" } },
                "per-user-rate": { "type": "rate-limit", "options": { "permits": 10, "perSeconds": 1, "burst": 2, "partitionBy": "connection", "action": "reply" } },
                "drop-internal": { "type": "json-filter", "options": { "path": "/type", "in": ["internal", "debug"], "action": "drop" } },
                "filter-close": { "type": "json-filter", "options": { "path": "/type", "equals": "forbidden", "action": "close" } },
                "stamp": { "type": "json-transform", "options": { "set": { "/via": "sluice" }, "rename": { "/text": "/body" } } },
                "throws": { "type": "script", "options": { "file": "throws.js", "json": true } },
              },
            }
            """);
        Gateway = await GatewayProcess.StartAsync(config, new Dictionary<string, string>
        {
            ["SLUICE_TEST_ADMIN_KEY"] = AdminKey,
            ["SLUICE_TEST_ALICE_KEY"] = "k-alice",
        });
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Python.DisposeAsync();
        await Node.DisposeAsync();
        _folder.Dispose();
    }

    public HttpClient Admin()
    {
        var client = new HttpClient { BaseAddress = Gateway.Http("/_sluice/") };
        client.DefaultRequestHeaders.Authorization = new("Bearer", AdminKey);
        return client;
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
