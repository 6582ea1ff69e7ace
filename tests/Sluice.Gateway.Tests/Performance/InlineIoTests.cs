using System.Diagnostics;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Performance;

/// <summary>
/// The gateway runs socket completions and its message chains on the socket's I/O thread (docs/architecture.md,
/// "Where the gateway's code runs"). Work that may block must leave that thread, or one connection would stall every
/// other one it serves. The gateway runs here with a single I/O thread, so a stall would reach every connection.
/// </summary>
public sealed class InlineIoTests : IAsyncLifetime
{
    private static readonly Dictionary<string, string> OneIoThread = new() { ["DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT"] = "1" };

    private ExternalPeer _python = null!;

    public async Task InitializeAsync() => _python = await ExternalPeer.StartServerAsync(PeerKind.Python);

    public async Task DisposeAsync() => await _python.DisposeAsync();

    [Fact]
    public async Task AScriptThatRunsLong_DoesNotHoldUpAnotherConnection()
    {
        using var folder = new ConfigFolder();
        // Busy for 1.5 s on "spin": a script within its timeout (Date.now allocates, hence the memory limit), but far
        // longer than an echo takes.
        folder.Write("(data) => { if (data === 'spin') { const start = Date.now(); while (Date.now() - start < 1500) { } } return data; }", "spin.js");
        var path = folder.Write($$"""
            {
              "routes": [
                { "path": "/slow", "proxy": { "target": "ws://{{_python.Authority}}/echo" }, "inbound": ["spin"] },
                { "path": "/fast", "proxy": { "target": "ws://{{_python.Authority}}/echo" } },
              ],
              "policies": { "spin": { "type": "script", "options": { "file": "spin.js", "timeoutMs": 5000, "memoryLimitBytes": 4294967296 } } },
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path, OneIoThread);
        await gateway.WaitForOutputAsync("I/O: inline");
        using var slow = await WebSocketClient.ConnectAsync(gateway.Ws("/slow"));
        using var fast = await WebSocketClient.ConnectAsync(gateway.Ws("/fast"));
        await fast.SendTextAsync("warm");
        Assert.Equal("warm", await fast.ReceiveTextAsync());

        var spinning = Stopwatch.StartNew();
        await slow.SendTextAsync("spin");
        await Task.Delay(200);
        await fast.SendTextAsync("meanwhile");
        Assert.Equal("meanwhile", await fast.ReceiveTextAsync());
        var answeredAfter = spinning.Elapsed;

        Assert.Equal("spin", await slow.ReceiveTextAsync());
        var spunFor = spinning.Elapsed;
        // The other connection was answered while the script still ran, not after it.
        Assert.True(answeredAfter < spunFor - TimeSpan.FromMilliseconds(500), $"answered after {answeredAfter.TotalMilliseconds:0} ms; the script ended after {spunFor.TotalMilliseconds:0} ms");
    }

    [Fact]
    public async Task InlineIo_CanBeTurnedOff_AndTheGatewayStillProxies()
    {
        using var folder = new ConfigFolder();
        var path = folder.Write($$"""
            { "routes": [ { "path": "/echo", "proxy": { "target": "ws://{{_python.Authority}}/echo" } } ] }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path, new Dictionary<string, string> { ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "0" });
        await gateway.WaitForOutputAsync("I/O: on the thread pool");
        Assert.DoesNotContain("I/O: inline", gateway.Output, StringComparison.Ordinal);
        using var client = await WebSocketClient.ConnectAsync(gateway.Ws("/echo"));
        await client.SendTextAsync("plain");
        Assert.Equal("plain", await client.ReceiveTextAsync());
    }
}
