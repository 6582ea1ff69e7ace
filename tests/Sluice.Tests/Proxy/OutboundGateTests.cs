using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Tests.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// docs/pipeline.md's rule for both modes: a connection's outbound chain runs for one message at a time, whether
/// the message comes from the backend, the app or a topic.
/// </summary>
public class OutboundGateTests
{
    [Fact]
    public async Task AppSends_AndBackendMessages_NeverRunTheOutboundChainConcurrently()
    {
        var running = 0;
        var mostAtOnce = 0;
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo/x", p => p.Outbound(async (message, _) =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref mostAtOnce, now);
            await Task.Delay(1);
            Interlocked.Decrement(ref running);
            return message;
        })));
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await HostModeTests.WaitUntilAsync(() => proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>().Count == 1);
        var connection = Assert.Single(proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>().List());

        const int Each = 40;
        var received = new List<string>();
        var receiving = Task.Run(async () =>
        {
            while (received.Count < 2 * Each)
            {
                received.Add(await client.ReceiveTextAsync(TimeSpan.FromSeconds(20)));
            }
        });

        // Messages from the backend (the client's, echoed) and from the app (in parallel), at the same time.
        var fromApp = Enumerable.Range(0, Each).Select(i => Task.Run(async () => await connection.SendAsync($"app {i}")));
        for (var i = 0; i < Each; i++)
        {
            await client.SendTextAsync($"backend {i}");
        }

        await Task.WhenAll(fromApp);
        await receiving;

        Assert.Equal(Each, received.Count(m => m.StartsWith("app ", StringComparison.Ordinal)));
        Assert.Equal(Enumerable.Range(0, Each).Select(i => $"backend {i}"), received.Where(m => m.StartsWith("backend ", StringComparison.Ordinal)));
        Assert.Equal(1, mostAtOnce);
    }

    [Fact]
    public async Task AnOutboundChainStuckHoldingTheGate_DoesNotOutliveTheCloseTimer()
    {
        // An app send whose outbound interceptor never finishes holds the gate; the backend pump then waits for it.
        // The close timer must still end the connection and give its place back.
        var stuck = new TaskCompletionSource<WebSocketMessage?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await RecordingBackend.StartAsync();
        await using var proxy = await TestServer.StartAsync(app => app.MapWebSocketProxy("/p", $"ws://{backend.Authority}/echo/x", p =>
        {
            p.ConfigureOptions(o => o.CloseTimeout = TimeSpan.FromSeconds(1));
            p.Outbound((message, _) => message.Text == "stuck" ? new ValueTask<WebSocketMessage?>(stuck.Task) : new(message));
        }));
        var registry = proxy.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        using var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/p"));
        await HostModeTests.WaitUntilAsync(() => registry.Count == 1);
        var connection = Assert.Single(registry.List());

        _ = Task.Run(async () => await connection.SendAsync("stuck"));
        await Task.Delay(200);
        await client.SendTextAsync("echoed by the backend: its pump now waits for the gate");
        await Task.Delay(500); // the echo is back and the backend pump waits for the gate before the close begins
        _ = connection.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.PolicyViolation, "bye");

        await HostModeTests.WaitUntilAsync(() => registry.Count == 0, timeoutMs: 15_000);
        stuck.SetResult(null);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
