using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests;

/// <summary>
/// Faults of peers and of the machine, and hostile input, against the real gateway process: each gets its documented
/// outcome and the other connections carry on.
/// </summary>
public class FaultTests
{
    [Fact]
    public async Task BackendThatAcceptsButNeverAnswers_Is502AfterConnectTimeout_AndOthersAreServed()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var silentPort = ((IPEndPoint)silent.LocalEndpoint).Port;
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [
                { "path": "/silent", "proxy": { "target": "ws://127.0.0.1:{{silentPort}}/", "connectTimeoutMs": 500 } },
                { "path": "/echo", "handler": { "type": "echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var bystander = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/silent"));

        Assert.Equal(502, raw.StatusCode);
        await bystander.SendTextAsync("still here");
        Assert.Equal("still here", await bystander.ReceiveTextAsync());
    }

    [Fact]
    public async Task ReloadsDuringTraffic_LoseReorderAndDropNothing()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Python);
        using var folder = new ConfigFolder();
        string Config(int version) => $$"""
            { "routes": [ { "path": "/p", "proxy": { "target": "ws://{{backend.Authority}}/echo" }, "inbound": ["tag"] } ],
              "policies": { "tag": { "type": "json-transform", "options": { "set": { "/v": {{version}} } } } } }
            """;
        var path = folder.Write(Config(0));
        await using var gateway = await GatewayProcess.StartAsync(path);
        var clients = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => WebSocketClient.ConnectAsync(gateway.Ws("/p"))));

        using var stop = new CancellationTokenSource();
        var traffic = clients.Select(client => Task.Run(async () =>
        {
            var sent = 0;
            while (!stop.IsCancellationRequested)
            {
                await client.SendTextAsync($$"""{"n":{{sent}}}""");
                using var echo = JsonDocument.Parse(await client.ReceiveTextAsync());
                Assert.Equal(sent, echo.RootElement.GetProperty("n").GetInt32());
                sent++;
            }

            return sent;
        })).ToArray();
        for (var version = 1; version <= 5; version++)
        {
            await Task.Delay(300);
            folder.Write(Config(version));
            await gateway.WaitForOutputAsync($"reloaded", TimeSpan.FromSeconds(10));
        }

        await Task.Delay(500);
        await stop.CancelAsync();
        var counts = await Task.WhenAll(traffic);

        Assert.All(counts, c => Assert.True(c > 10, $"a client only got {c} round trips"));
        Assert.All(clients, c => Assert.Equal(WebSocketState.Open, c.State));
        await clients[0].SendTextAsync("{}");
        Assert.Equal(5, JsonDocument.Parse(await clients[0].ReceiveTextAsync()).RootElement.GetProperty("v").GetInt32());
    }

    [Fact]
    public async Task SigtermDuringTraffic_Closes1001_AndExits0()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);
        var clients = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => WebSocketClient.ConnectAsync(gateway.Ws("/echo"))));
        var closes = clients.Select(client => Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await client.SendTextAsync("busy");
                    var message = await client.ReceiveMessageAsync(TimeSpan.FromSeconds(20));
                    if (message.CloseStatus is { } status)
                    {
                        return status;
                    }
                }
            }
            catch (WebSocketException) when (client.CloseStatus is { } status)
            {
                return status;
            }
        })).ToArray();
        await Task.Delay(300);

        var exitCode = await gateway.StopAsync();

        Assert.Equal(0, exitCode);
        Assert.All(await Task.WhenAll(closes), status => Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, status));
    }

    [Fact]
    public async Task OpenFileLimitReached_NewcomersGet503_EveryoneElseIsServed()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        // 600 descriptors, about 200 held by the runtime at start: the default cap is near (600 - 150 - 200) / 2 = 125
        // connections, each leaving room for a backend socket.
        await using var gateway = await GatewayProcess.StartAsync(path, openFileLimit: 600);
        var accepted = new List<ClientWebSocket>();
        var refused = 0;
        for (var i = 0; i < 250; i++)
        {
            using var probe = await RawWebSocket.ConnectAsync(gateway.Ws("/echo"));
            if (probe.StatusCode == 503)
            {
                refused++;
                continue;
            }

            probe.Dispose();
            try
            {
                accepted.Add(await WebSocketClient.ConnectAsync(gateway.Ws("/echo")));
            }
            catch (WebSocketException ex) when (ex.Message.Contains("'503'", StringComparison.Ordinal))
            {
                // At the edge of the budget the probe's place may not be given back yet when this client comes: it is
                // a newcomer refused like the others.
                refused++;
            }
        }

        try
        {
            Assert.True(refused > 0, "nobody was refused");
            Assert.InRange(accepted.Count, 50, 200);
            foreach (var client in accepted)
            {
                await client.SendTextAsync("served");
                Assert.Equal("served", await client.ReceiveTextAsync());
            }

            Assert.False(gateway.HasExited);
        }
        finally
        {
            foreach (var client in accepted)
            {
                client.Dispose();
            }
        }
    }

    [Theory]
    [InlineData("GARBAGE\r\n\r\n", 400)]
    [InlineData("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400)]
    [InlineData("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400)]
    [InlineData("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426)]
    public async Task MalformedUpgrades_GetAClearHttpError_AndTheGatewayCarriesOn(string request, int status)
    {
        using var folder = new ConfigFolder();
        await using var gateway = await StartEchoAsync(folder);
        using var bystander = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/echo"), request);

        Assert.Equal(status, raw.StatusCode);
        await bystander.SendTextAsync("ok");
        Assert.Equal("ok", await bystander.ReceiveTextAsync());
    }

    [Fact]
    public async Task OversizeHeaders_Get431()
    {
        using var folder = new ConfigFolder();
        await using var gateway = await StartEchoAsync(folder);

        using var raw = await RawWebSocket.ConnectAsync(gateway.Ws("/echo"), extraHeaders: $"X-Big: {new string('a', 64 * 1024)}\r\n");

        Assert.Equal(431, raw.StatusCode);
    }

    [Fact]
    public async Task QueryValuesInARewrite_CannotInjectHeadersOrPathSegments()
    {
        await using var backend = await ExternalPeer.StartServerAsync(PeerKind.Node);
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""{ "routes": [ { "path": "/h", "proxy": { "target": "ws://{{backend.Authority}}/headers/${query.room}?u=${query.user}" } } ] }""");
        await using var gateway = await GatewayProcess.StartAsync(path);

        using var dotDot = await RawWebSocket.ConnectAsync(gateway.Ws("/h?room=..&user=x"));
        Assert.Equal(400, dotDot.StatusCode);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/h?room=..%2F..%2Fadmin&user=a%0D%0AX-Evil%3A%201"));

        using var seen = JsonDocument.Parse(await client.ReceiveTextAsync());
        Assert.Equal("/headers/..%2F..%2Fadmin?u=a%0D%0AX-Evil%3A%201", seen.RootElement.GetProperty("path").GetString());
        Assert.False(seen.RootElement.GetProperty("headers").TryGetProperty("x-evil", out _));
    }

    [Fact]
    public async Task HostileJson_ToEveryJsonPolicy_GetsTheDocumentedOutcome_AndTheConnectionLives()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write("""
            {
              "routes": [
                { "path": "/lenient", "handler": { "type": "echo" }, "inbound": ["redact", "filter", "transform"] },
                { "path": "/strict", "handler": { "type": "echo" }, "inbound": ["schema"] },
              ],
              "policies": {
                "redact": { "type": "json-redact", "options": { "paths": ["/password"] } },
                "filter": { "type": "json-filter", "options": { "path": "/type", "equals": "internal" } },
                "transform": { "type": "json-transform", "options": { "set": { "/seen": true } } },
                "schema": { "type": "json-schema", "options": { "schema": { "type": "object" }, "action": "reply" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var lenient = await WebSocketClient.ConnectAsync(gateway.Ws("/lenient"));
        using var strict = await WebSocketClient.ConnectAsync(gateway.Ws("/strict"));
        var deep = new string('[', 10_000) + new string(']', 10_000);
        var hostile = new[]
        {
            deep,
            """{"n":1e400,"password":"x"}""",
            "{\"s\":\"" + new string('x', 500_000) + "\",\"password\":\"x\"}",
            "{\"password\":\"\\\\\"}",
            "{\"unterminated\":",
        };

        foreach (var message in hostile)
        {
            await lenient.SendTextAsync(message);
            await lenient.SendTextAsync("""{"sentinel":1}""");
            var echoed = await lenient.ReceiveTextAsync();
            if (echoed.Contains("\"sentinel\"", StringComparison.Ordinal))
            {
                // Near-JSON json-redact cannot parse (too deep, broken) is dropped, not passed unread.
                Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(message, new JsonDocumentOptions { MaxDepth = 1000, AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }));
            }
            else
            {
                // JSON the lenient policies can read is redacted and stamped.
                Assert.True(!echoed.Contains("\"password\"", StringComparison.Ordinal) && echoed.Contains("\"seen\":true", StringComparison.Ordinal), echoed[..Math.Min(200, echoed.Length)]);
                Assert.Contains("\"sentinel\"", await lenient.ReceiveTextAsync(), StringComparison.Ordinal);
            }

            await strict.SendTextAsync(message);
            var answer = await strict.ReceiveTextAsync();
            if (answer.StartsWith("{\"error\"", StringComparison.Ordinal))
            {
                Assert.Equal(400, JsonDocument.Parse(answer).RootElement.GetProperty("error").GetProperty("status").GetInt32());
            }
            else
            {
                Assert.Equal(message, answer);
            }
        }

        await strict.SendTextAsync(deep);
        Assert.Contains("\"status\":400", await strict.ReceiveTextAsync(), StringComparison.Ordinal);

        // A lone UTF-16 surrogate in a name: json-schema answers 400; the editing policies cannot build a tree of it,
        // so the message is dropped as a policy failure (logged without the payload), and the connection goes on.
        const string LoneSurrogate = "{\"\\udc00\":\"lone surrogate\",\"password\":\"x\"}";
        await strict.SendTextAsync(LoneSurrogate);
        Assert.Contains("\"status\":400", await strict.ReceiveTextAsync(), StringComparison.Ordinal);
        await lenient.SendTextAsync(LoneSurrogate);
        await lenient.SendTextAsync("""{"after":1}""");
        Assert.Contains("\"after\":1", await lenient.ReceiveTextAsync(), StringComparison.Ordinal);
        Assert.DoesNotContain("lone surrogate", gateway.Output + gateway.Error, StringComparison.Ordinal);
        Assert.Equal(WebSocketState.Open, lenient.State);
        Assert.Equal(WebSocketState.Open, strict.State);
    }

    private static Task<GatewayProcess> StartEchoAsync(ConfigFolder folder) =>
        GatewayProcess.StartAsync(folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }"""));
}
