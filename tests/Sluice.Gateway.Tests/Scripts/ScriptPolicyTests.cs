using System.Net.WebSockets;
using System.Text.Json.Nodes;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Scripts;

/// <summary>
/// The gateway's <c>script</c> policy, Zuplo-style, through the real process: the sample that acknowledges and counts,
/// the context a script sees, scripts that misbehave, and a script file reloaded with the configuration. The proxied
/// routes lead to a python3-websockets echo server.
/// </summary>
public sealed class ScriptPolicyTests : IAsyncLifetime
{
    private static readonly string SampleFolder = Path.GetFullPath(Path.Combine(ExternalPeer.InteropDirectory, "..", "..", "samples", "Scripts"));

    private ExternalPeer _python = null!;

    public async Task InitializeAsync() => _python = await ExternalPeer.StartServerAsync(PeerKind.Python);

    public async Task DisposeAsync() => await _python.DisposeAsync();

    [Fact]
    public async Task TheSample_AsShipped_AcknowledgesEveryMessage_AndCountsPerConnection()
    {
        await using var gateway = await GatewayProcess.StartAsync(Path.Combine(SampleFolder, "sluice.json"));
        using var first = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        using var second = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));

        await first.SendTextAsync("hello");
        var ack = JsonNode.Parse(await first.ReceiveTextAsync())!;
        Assert.Equal(1, (int)ack["ack"]!);
        Assert.Equal("hello", await first.ReceiveTextAsync());
        await first.SendTextAsync("again");
        Assert.Equal(2, (int)JsonNode.Parse(await first.ReceiveTextAsync())!["ack"]!);
        Assert.Equal("again", await first.ReceiveTextAsync());

        await second.SendTextAsync("other");
        var otherAck = JsonNode.Parse(await second.ReceiveTextAsync())!;
        Assert.Equal(1, (int)otherAck["ack"]!);
        Assert.NotEqual((string?)ack["connection"], (string?)otherAck["connection"]);
    }

    [Fact]
    public async Task TheSample_InFrontOfAPythonBackend_AcknowledgesBeforeTheBackendAnswers_AndTargetSendReachesTheBackend()
    {
        using var folder = new ConfigFolder();
        File.Copy(Path.Combine(SampleFolder, "ack.js"), Path.Combine(folder.Path, "ack.js"));
        folder.Write("(data, context) => { if (data.startsWith('twice ')) context.target.send(data.slice(6)); return data; }", "twice.js");
        var path = folder.Write($$"""
            {
              "routes": [
                { "path": "/chat", "proxy": { "target": "ws://{{_python.Authority}}/echo" }, "inbound": ["ack", "twice"] },
              ],
              "policies": {
                "ack": { "type": "script", "options": { "file": "ack.js", "timeoutMs": 50 } },
                "twice": { "type": "script", "options": { "file": "twice.js" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/chat"));

        await client.SendTextAsync("one");
        Assert.Equal(1, (int)JsonNode.Parse(await client.ReceiveTextAsync())!["ack"]!);
        Assert.Equal("one", await client.ReceiveTextAsync());
        await client.SendTextAsync("twice two");
        Assert.Equal(2, (int)JsonNode.Parse(await client.ReceiveTextAsync())!["ack"]!);
        // The python backend echoes what target.send sent ahead of the message itself.
        Assert.Equal("two", await client.ReceiveTextAsync());
        Assert.Equal("twice two", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task TheContext_HoldsTheRouteValuesQueryHeadersSubjectAndClaims()
    {
        using var folder = new ConfigFolder();
        folder.Write("""
            async function policy(data, c) {
              await Promise.resolve();
              return JSON.stringify({
                direction: c.direction, route: c.route, subject: c.subject, sub: c.claims.sub,
                room: c.request.params.room, user: c.request.query.user, team: c.request.headers.get('x-team'),
              });
            }
            """, "context.js");
        var path = folder.Write($$"""
            {
              "routes": [
                { "path": "/rooms/{room}", "proxy": { "target": "ws://{{_python.Authority}}/echo" }, "upgrade": ["key"], "inbound": ["context"] },
              ],
              "policies": {
                "key": { "type": "api-key", "options": { "header": "X-Api-Key", "keys": [ { "key": "k-alice", "subject": "alice" } ] } },
                "context": { "type": "script", "options": { "file": "context.js" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/rooms/blue?user=ann"), o =>
        {
            o.SetRequestHeader("X-Api-Key", "k-alice");
            o.SetRequestHeader("X-Team", "red");
        });

        await client.SendTextAsync("x");

        Assert.Equal("""{"direction":"inbound","route":"/rooms/{room}","subject":"alice","sub":"alice","room":"blue","user":"ann","team":"red"}""", await client.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("/hosted")]
    [InlineData("/proxied")]
    public async Task AScriptThatLoopsAllocatesThrowsReturnsANumberOrSendsAfterClosing_DropsItsMessage_AndTheConnectionAndItsNeighboursCarryOn(string route)
    {
        using var folder = new ConfigFolder();
        folder.Write("""
            function policy(data, c) {
              if (data === 'loop') { while (true) {} }
              if (data === 'alloc') { const a = []; while (true) { a.push(new Array(100000).fill(1)); } }
              if (data === 'throw') { throw new Error('thrown on purpose'); }
              if (data === 'number') { return 42; }
              if (data === 'never') { return new Promise(() => {}); }
              return data;
            }
            """, "bad.js");
        folder.Write("(data, c) => { if (data === 'close') { c.close(4000, 'asked'); c.source.send('late'); c.target.send('late'); } return data; }", "closer.js");
        var path = folder.Write($$"""
            {
              "routes": [
                { "path": "/hosted", "handler": { "type": "echo" }, "inbound": ["bad", "closer"] },
                { "path": "/proxied", "proxy": { "target": "ws://{{_python.Authority}}/echo" }, "inbound": ["bad", "closer"] },
              ],
              "policies": {
                "bad": { "type": "script", "options": { "file": "bad.js", "timeoutMs": 100, "memoryLimitBytes": 8388608 } },
                "closer": { "type": "script", "options": { "file": "closer.js" } },
              },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws(route));
        using var neighbour = await WebSocketClient.ConnectAsync(gateway.Ws(route));

        foreach (var bad in new[] { "loop", "alloc", "throw", "number", "never" })
        {
            await client.SendTextAsync(bad);
            await neighbour.SendTextAsync("neighbour " + bad);
            await client.SendTextAsync("after " + bad);
            Assert.Equal("neighbour " + bad, await neighbour.ReceiveTextAsync());
            Assert.Equal("after " + bad, await client.ReceiveTextAsync());
        }

        await gateway.WaitForOutputAsync("thrown on purpose");
        await gateway.WaitForOutputAsync("returned a number");
        Assert.Equal(WebSocketState.Open, client.State);

        // Sending after close is discarded quietly: the close arrives with its code, the neighbour is untouched.
        await client.SendTextAsync("close");
        var (status, reason) = await client.ReceiveCloseAsync();
        Assert.Equal((WebSocketCloseStatus)4000, status);
        Assert.Equal("asked", reason);
        await neighbour.SendTextAsync("still here");
        Assert.Equal("still here", await neighbour.ReceiveTextAsync());
    }

    [Fact]
    public async Task AScriptFile_IsReloadedWithTheConfiguration()
    {
        using var folder = new ConfigFolder();
        folder.Write("(data) => 'v1 ' + data", "version.js");
        var config = """
            {
              "routes": [ { "path": "/v", "handler": { "type": "echo" }, "inbound": ["version"] } ],
              "policies": { "version": { "type": "script", "options": { "file": "version.js" } } },
            }
            """;
        var path = folder.Write(config);
        await using var gateway = await GatewayProcess.StartAsync(path);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/v"));
        await client.SendTextAsync("a");
        Assert.Equal("v1 a", await client.ReceiveTextAsync());

        folder.Write("(data) => 'v2 ' + data", "version.js");
        folder.Write(config + "\n");
        await gateway.WaitForOutputAsync("reloaded");

        await client.SendTextAsync("b");
        Assert.Equal("v2 b", await client.ReceiveTextAsync());
    }
}
