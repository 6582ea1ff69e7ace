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
