using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Hosting;

/// <summary>
/// Drives the connection timers (keep-alive, idle timeout, close timeout) with a <see cref="FakeTimeProvider"/>:
/// a test advances minutes of timer time in milliseconds, and the timers' decisions depend on that time only.
/// </summary>
public static class FakeClock
{
    /// <summary>Registers a fake clock as the server's <see cref="TimeProvider"/>.</summary>
    public static FakeTimeProvider Register(IServiceCollection services)
    {
        var time = new FakeTimeProvider();
        services.AddSingleton<TimeProvider>(time);
        return time;
    }

    /// <summary>Waits until the server has <paramref name="count"/> connections, so that the next tick sees them.</summary>
    public static Task WaitForConnectionsAsync(TestServer server, int count = 1)
    {
        var registry = server.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        return HostModeTests.WaitUntilAsync(() => registry.Count == count);
    }

    /// <summary>
    /// Advances the clock by <paramref name="step"/>, then waits (real time, bounded) until every open connection's
    /// client has been heard from within <paramref name="interval"/>: a ping that this step made the server send has
    /// been answered. The clock moves on only once the answer is in, however slow the machine.
    /// </summary>
    public static async Task AdvanceAndAwaitPongsAsync(this FakeTimeProvider time, TestServer server, TimeSpan step, TimeSpan interval)
    {
        time.Advance(step);
        var registry = server.Services.GetRequiredService<IWebSocketConnectionRegistry>();
        await HostModeTests.WaitUntilAsync(() => registry.List().All(c => c.IsClosing || time.GetElapsedTime(c.ClientLeg.LastReceiveTicks) < interval));
    }
}
