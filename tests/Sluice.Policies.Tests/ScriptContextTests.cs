using System.Net.WebSockets;
using System.Text.Json.Nodes;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>
/// The script policy as Zuplo's policy functions: the data as text or an ArrayBuffer, the context's sends, request,
/// state and close, async functions, and what happens to a script that misbehaves. Hosted and proxied, real sockets.
/// </summary>
public class ScriptContextTests
{
    private const string Ack = """
        function policy(data, context) {
          context.state.count = (context.state.count || 0) + 1;
          context.source.send('ack ' + context.state.count + ' ' + typeof data);
          return data;
        }
        """;

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task SourceSend_AcknowledgesToTheSender_AndStateCountsPerConnection(Mode mode)
    {
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = Ack })).InboundOnly());
        using var first = await WebSocketClient.ConnectAsync(harness.Uri(mode));
        using var second = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        // JSON text reaches the script as a string now; the acknowledgement goes out ahead of the message.
        await first.SendTextAsync("""{"n":1}""");
        Assert.Equal("ack 1 string", await first.ReceiveTextAsync());
        Assert.Equal("""{"n":1}""", await first.ReceiveTextAsync());
        await first.SendTextAsync("b");
        Assert.Equal("ack 2 string", await first.ReceiveTextAsync());
        Assert.Equal("b", await first.ReceiveTextAsync());

        // Another connection has its own state.
        await second.SendTextAsync("c");
        Assert.Equal("ack 1 string", await second.ReceiveTextAsync());
        Assert.Equal("c", await second.ReceiveTextAsync());
        await first.SendTextAsync("d");
        Assert.Equal("ack 3 string", await first.ReceiveTextAsync());
    }

    [Fact]
    public async Task TargetSend_OnAProxiedRoute_ReachesTheBackendAheadOfTheMessage()
    {
        const string script = "(data, context) => { context.target.send('before ' + data); return data; }";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync("x");

        // The backend echoes both, in the order they reached it.
        Assert.Equal("before x", await client.ReceiveTextAsync());
        Assert.Equal("x", await client.ReceiveTextAsync());
        Assert.Equal(["before x", "x"], harness.BackendReceived);
    }

    [Fact]
    public async Task TargetSend_OnAHostedRoute_IsAClearError_TheMessageIsDroppedAndTheConnectionLives()
    {
        const string script = "(data, context) => { if (data === 'send') context.target.send('extra'); return data; }";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script }, "js")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("send");
        await client.SendTextAsync("next");

        Assert.Equal("next", await client.ReceiveTextAsync());
        var failure = await harness.Server.Logs.WaitForAsync(e => e.EventId.Id == 200);
        Assert.Contains("the target of an inbound message is the handler", failure.Exception!.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Outbound_TargetSendReachesTheClient_SourceSendTheBackend(Mode mode)
    {
        const string script = """
            (data, context) => {
              if (data.startsWith('note')) return data;
              context.target.send('copy ' + data);
              if (context.request.query.source === 'yes') context.source.send('note ' + data);
              return data;
            }
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).OutboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode, mode == Mode.Proxy ? "?source=yes" : ""));

        await client.SendTextAsync("x");

        Assert.Equal("copy x", await client.ReceiveTextAsync());
        Assert.Equal("x", await client.ReceiveTextAsync());
        if (mode == Mode.Proxy)
        {
            // The note went to the backend, which echoed it back through the outbound chain.
            Assert.Equal("note x", await client.ReceiveTextAsync());
            Assert.Equal(["x", "note x"], harness.BackendReceived);
        }
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task AsyncFunctions_AreAwaited_AndOneThatNeverSettles_DropsItsMessageWithinTheTimeout(Mode mode)
    {
        const string script = """
            async function policy(data, context) {
              await Promise.resolve();
              if (data === 'hang') await new Promise(() => {});
              if (data === 'reject') throw new Error('rejected');
              return data + '!';
            }
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script, TimeoutMs = 200 }, "js")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("hang");
        await client.SendTextAsync("reject");
        await client.SendTextAsync("ok");

        Assert.Equal("ok!", await client.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, client.State);
        await harness.Server.Logs.WaitForAsync(e => e.EventId.Id == 200 && e.Exception!.Message.Contains("rejected", StringComparison.Ordinal));
        Assert.Equal(2, harness.Server.Logs.Entries.Count(e => e.EventId.Id == 200));
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Binary_IsAnArrayBuffer_AndOneReturnedIsSentAsBinary(Mode mode)
    {
        const string script = "(data) => data instanceof ArrayBuffer ? new Uint8Array(data).reverse().buffer : data";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendBinaryAsync([1, 2, 3]);

        var received = await client.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, received.Type);
        Assert.Equal([3, 2, 1], received.Payload);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Context_CarriesTheRequestAndWhoTheClientIs(Mode mode)
    {
        const string script = """
            (data, c) => JSON.stringify({
              direction: c.direction, route: c.route, id: typeof c.connectionId, subject: c.subject, claims: c.claims,
              team: c.request.headers.get('X-Team'), missing: c.request.headers.get('x-missing'), room: c.request.query.room,
            })
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode, "?room=7"), o => o.SetRequestHeader("x-team", "blue"));

        await client.SendTextAsync("x");

        var seen = JsonNode.Parse(await client.ReceiveTextAsync())!;
        Assert.Equal("inbound", (string?)seen["direction"]);
        Assert.Equal(mode == Mode.Host ? "/host" : "/proxy", (string?)seen["route"]);
        Assert.Equal("string", (string?)seen["id"]);
        Assert.Null(seen["subject"]);
        Assert.Empty(seen["claims"]!.AsObject());
        Assert.Equal("blue", (string?)seen["team"]);
        Assert.Null(seen["missing"]);
        Assert.Equal("7", (string?)seen["room"]);
    }

    [Theory]
    [InlineData(Mode.Host)]
    [InlineData(Mode.Proxy)]
    public async Task Close_ClosesWithTheCode_AndASendAfterwardsIsDiscardedWithoutAnError(Mode mode)
    {
        const string script = "(data, c) => { c.close(4001, 'bye'); return c.source.send('late') ? 'sent' : 'discarded'; }";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(mode));

        await client.SendTextAsync("x");

        var received = await client.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Close, received.Type);
        Assert.Equal((WebSocketCloseStatus)4001, received.CloseStatus);
        Assert.Equal("bye", received.CloseReason);
        Assert.DoesNotContain(harness.Server.Logs.Entries, e => e.EventId.Id == 200);
    }

    [Theory]
    [InlineData("c.close(1006)", "1006 is not a close code")]
    [InlineData("c.close(4000, 'x'.repeat(124))", "longer than 123 bytes")]
    [InlineData("42", "returned a number")]
    [InlineData("({ a: 1 })", "returned an object")]
    [InlineData("c.source.send({})", "send takes a string")]
    public async Task BadCloseOrReturnOrSend_DropsTheMessage_LoggedWithWhy_AndTheConnectionLives(string bad, string logged)
    {
        var script = $$"""(data, c) => { if (data === 'bad') { return {{bad}}; } return data; }""";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script }, "js")).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("bad");
        await client.SendTextAsync("good");

        Assert.Equal("good", await client.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, client.State);
        var failure = await harness.Server.Logs.WaitForAsync(e => e.EventId.Id == 200);
        Assert.Contains(logged, failure.Exception!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithJson_ValuesReturnedAreSentAsJson()
    {
        const string script = "(data) => typeof data === 'object' ? data.n : data";
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script, Json = true })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Host));

        await client.SendTextAsync("""{"n":{"m":[1,true]}}""");
        Assert.Equal("""{"m":[1,true]}""", await client.ReceiveTextAsync());
        await client.SendTextAsync("""{"n":42}""");
        Assert.Equal("42", await client.ReceiveTextAsync());
        await client.SendTextAsync("not json");
        Assert.Equal("not json", await client.ReceiveTextAsync());
    }

    [Fact]
    public async Task State_ThatAScriptFailsOn_IsLeftAsItWas()
    {
        const string script = """
            (data, c) => {
              c.state.seen = (c.state.seen || '') + data;
              if (data === 'x') throw new Error('no');
              return c.state.seen;
            }
            """;
        await using var harness = await PolicyHarness.StartAsync(p => p.UsePolicy(new ScriptPolicy(new() { Source = script })).InboundOnly());
        using var client = await WebSocketClient.ConnectAsync(harness.Uri(Mode.Proxy));

        await client.SendTextAsync("a");
        Assert.Equal("a", await client.ReceiveTextAsync());
        await client.SendTextAsync("x");
        await client.SendTextAsync("b");
        Assert.Equal("ab", await client.ReceiveTextAsync());
    }
}
