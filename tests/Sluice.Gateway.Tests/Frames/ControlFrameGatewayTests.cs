using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Frames;

/// <summary>
/// The <c>frames</c> option of the <c>script</c> and <c>log</c> policies through the real gateway process, in front of
/// a python3-websockets backend that reports the close it received: a close rewritten on its way to the backend (and,
/// on a hosted route, in the answer), a ping swallowed, keep-alive through a script that swallows pings and pongs,
/// rewrites the protocol forbids, and scripts that fail on a close.
/// </summary>
public sealed class ControlFrameGatewayTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);

    // Echoes data; when a connection ends, prints the close code and reason it received.
    private const string Backend = """
        import asyncio, sys, websockets

        async def handler(ws, path):
            try:
                async for message in ws:
                    await ws.send(message)
            except websockets.ConnectionClosed:
                pass
            print(f"CLOSE {ws.close_code} {ws.close_reason}", flush=True)

        async def main():
            async with websockets.serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
                print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
                await asyncio.Future()

        asyncio.run(main())
        """;

    private readonly ConcurrentQueue<string> _closes = new();
    private readonly ConfigFolder _folder = new();
    private Process _backend = null!;
    private int _port;

    public async Task InitializeAsync()
    {
        var script = Path.Combine(_folder.Path, "backend.py");
        await File.WriteAllTextAsync(script, Backend);
        _backend = Process.Start(new ProcessStartInfo("/usr/bin/python3") { ArgumentList = { script }, RedirectStandardOutput = true, UseShellExecute = false })!;
        var port = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        _backend.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            if (e.Data.StartsWith("PORT ", StringComparison.Ordinal))
            {
                port.TrySetResult(int.Parse(e.Data[5..], System.Globalization.CultureInfo.InvariantCulture));
            }
            else if (e.Data.StartsWith("CLOSE ", StringComparison.Ordinal))
            {
                _closes.Enqueue(e.Data[6..]);
            }
        };
        _backend.BeginOutputReadLine();
        _port = await port.Task.WaitAsync(Wait);
    }

    public Task DisposeAsync()
    {
        _backend.Kill();
        _backend.Dispose();
        _folder.Dispose();
        return Task.CompletedTask;
    }

    private async Task<string> BackendCloseAsync()
    {
        using var cts = new CancellationTokenSource(Wait);
        string? close;
        while (!_closes.TryDequeue(out close))
        {
            await Task.Delay(20, cts.Token);
        }

        return close;
    }

    private async Task<GatewayProcess> StartAsync(string script, string frames, string limits = "")
    {
        _folder.Write(script, "frames.js");
        var path = _folder.Write($$"""
            {
              {{limits}}
              "routes": [
                { "path": "/proxied", "proxy": { "target": "ws://127.0.0.1:{{_port}}/" }, "inbound": ["log", "frames"], "outbound": ["frames"] },
                { "path": "/hosted", "handler": { "type": "echo" }, "inbound": ["log", "frames"] },
              ],
              "policies": {
                "frames": { "type": "script", "options": { "file": "frames.js", "timeoutMs": 100, "frames": {{frames}} } },
                "log": { "type": "log", "options": { "frames": ["ping", "pong", "close"] } },
              },
            }
            """);
        return await GatewayProcess.StartAsync(path);
    }

    [Fact]
    public async Task AScript_RewritesTheCloseCode_TheBackendSees_AndTheClientGetsItsOwnEcho()
    {
        await using var gateway = await StartAsync(
            "(data, c) => c.frame && c.frame.type === 'close' ? { code: c.frame.code + 1, reason: 'rewritten: ' + c.frame.reason } : data",
            """["close"]""");
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws("/proxied"));
        await client.SendTextAsync("hello");
        Assert.Equal("hello", (await client.ReadFrameAsync(Wait))!.Text);

        await client.SendCloseAsync(4000, "bye");

        Assert.Equal(((ushort?)4000, "bye"), await client.ReadCloseAsync(Wait));
        Assert.Equal("4001 rewritten: bye", await BackendCloseAsync());
        // The log policy logged the close as it came.
        await gateway.WaitForOutputAsync("Inbound close frame, code 4000, reason bye");
    }

    [Fact]
    public async Task OnAHostedRoute_TheRewrittenClose_IsTheGatewaysAnswer()
    {
        await using var gateway = await StartAsync("(data, c) => c.frame ? { code: 4100, reason: 'host rewrote' } : data", """["close"]""");
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws("/hosted"));

        await client.SendCloseAsync(1000, "bye");

        Assert.Equal(((ushort?)4100, "host rewrote"), await client.ReadCloseAsync(Wait));
        Assert.True(await client.WaitForTcpCloseAsync(Wait));
    }

    [Theory]
    [InlineData("/proxied")]
    [InlineData("/hosted")]
    public async Task AScriptReturningUndefined_SwallowsAPing_AndTheLogPolicyLogsIt(string route)
    {
        await using var gateway = await StartAsync("(data, c) => c.frame && c.frame.type === 'ping' ? undefined : data", """["ping"]""");
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws(route));

        await client.SendFrameAsync(0x9, Encoding.UTF8.GetBytes("swallow me"));
        await client.SendTextAsync("after the ping");

        // No pong: the first frame back is the echo.
        var frame = await client.ReadFrameAsync(Wait);
        Assert.Equal((0x1, "after the ping"), (frame!.Opcode, frame.Text));
        await gateway.WaitForOutputAsync("Inbound ping frame");
    }

    [Fact]
    public async Task KeepAlive_KeepsWorking_ThroughAScriptThatSwallowsEveryPingAndPong()
    {
        await using var gateway = await StartAsync(
            "(data, c) => c.frame ? undefined : data",
            """["ping", "pong"]""",
            """ "limits": { "keepAliveSeconds": 2 }, """);
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws("/proxied"));

        // The gateway pings the client every two seconds and drops it after two silent intervals. Answering four pings
        // (the script swallows each pong) spans more than that: the pongs still count.
        for (var i = 0; i < 4; i++)
        {
            var ping = await client.ReadFrameAsync(Wait);
            Assert.Equal(0x9, ping!.Opcode);
            await client.SendFrameAsync(0xA, ping.Payload);
        }

        await client.SendTextAsync("still alive");
        RawWebSocket.ServerFrame? echo;
        do
        {
            echo = await client.ReadFrameAsync(Wait);
        }
        while (echo is { Opcode: 0x9 });
        Assert.Equal("still alive", echo!.Text);
        await gateway.WaitForOutputAsync("Inbound pong frame");
        Assert.DoesNotContain("keep-alive", gateway.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("{ code: 1005 }", "may not be sent")]
    [InlineData("{ code: 1006, reason: 'abnormal' }", "may not be sent")]
    [InlineData("{ code: 1015 }", "may not be sent")]
    [InlineData("{ code: 999 }", "may not be sent")]
    [InlineData("{ code: 5000 }", "may not be sent")]
    [InlineData("{ code: 70000 }", "not a 16-bit number")]
    [InlineData("{ code: 4000, reason: 'x'.repeat(124) }", "longer than 123 bytes")]
    [InlineData("(() => { throw new Error('close handler bug'); })()", "close handler bug")]
    [InlineData("(() => { while (true) {} })()", "timed out")]
    public async Task AnInvalidRewriteOrAFailingScript_RelaysTheOriginalClose_AndLogsWhy(string result, string logged)
    {
        await using var gateway = await StartAsync($"(data, c) => c.frame ? {result} : data", """["close"]""");
        using var client = await RawWebSocket.ConnectAsync(gateway.Ws("/proxied"));
        using var neighbour = await RawWebSocket.ConnectAsync(gateway.Ws("/proxied"));
        await client.SendTextAsync("hello");
        Assert.Equal("hello", (await client.ReadFrameAsync(Wait))!.Text);

        await client.SendCloseAsync(4000, "original");

        Assert.Equal(((ushort?)4000, "original"), await client.ReadCloseAsync(Wait));
        Assert.Equal("4000 original", await BackendCloseAsync());
        Assert.True(await client.WaitForTcpCloseAsync(Wait));
        await gateway.WaitForOutputAsync(logged);

        await neighbour.SendTextAsync("neighbour");
        Assert.Equal("neighbour", (await neighbour.ReadFrameAsync(Wait))!.Text);
    }

    [Fact]
    public async Task AnUnknownFrame_IsAConfigurationError_WithItsJsonPath()
    {
        var path = _folder.Write("""
            {
              "routes": [ { "path": "/echo", "handler": { "type": "echo" }, "inbound": ["log"] } ],
              "policies": { "log": { "type": "log", "options": { "frames": ["ping", "text"] } } },
            }
            """);

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        Assert.Contains("policies.log.options.frames[1]", error, StringComparison.Ordinal);
        Assert.Contains("'text' is not a control frame", error, StringComparison.Ordinal);
    }
}
