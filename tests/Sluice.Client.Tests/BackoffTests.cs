using Microsoft.Extensions.Time.Testing;
using Sluice.Gateway.Tests.Infrastructure;
using static Sluice.Client.Tests.SluiceClientTests;

namespace Sluice.Client.Tests;

/// <summary>Reconnect delays: exponential bounds, capped, with full jitter, timed by the options' TimeProvider.</summary>
public sealed class BackoffTests
{
    [Theory]
    [InlineData(1.0, new[] { 1.0, 2.0, 4.0, 8.0, 8.0, 8.0 })]
    [InlineData(0.5, new[] { 0.5, 1.0, 2.0, 4.0, 4.0, 4.0 })]
    [InlineData(0.0, new[] { 0.0, 0.0, 0.0, 0.0, 0.0, 0.0 })]
    public void NextDelay_DoublesTheBound_UpToTheMaximum_ScaledByTheJitter(double jitter, double[] seconds)
    {
        var client = new SluiceClient(new Uri("ws://127.0.0.1:1/topics"), new SluiceClientOptions
        {
            InitialReconnectDelay = TimeSpan.FromSeconds(1),
            MaxReconnectDelay = TimeSpan.FromSeconds(8),
            Jitter = () => jitter,
        });

        Assert.Equal(seconds.Select(TimeSpan.FromSeconds), Enumerable.Range(0, 6).Select(client.NextDelay));
        Assert.Equal(TimeSpan.FromSeconds(8 * jitter), client.NextDelay(int.MaxValue)); // no overflow however long it tried
    }

    [Fact]
    public async Task ReconnectDelays_RunOnTheTimeProvider()
    {
        var time = new FakeTimeProvider();
        var port = GatewayProcess.FreePort(); // nothing listens: each attempt is refused at once
        await using var a = new Recorder(new Uri($"ws://127.0.0.1:{port}/topics"), o =>
        {
            o.TimeProvider = time;
            o.Jitter = () => 0.5;
            o.InitialReconnectDelay = TimeSpan.FromSeconds(10);
            o.MaxReconnectDelay = TimeSpan.FromSeconds(30);
        });
        _ = a.Client.ConnectAsync();

        await Eventually(() => a.States.Contains(SluiceClientState.Reconnecting), "the first refusal");
        // Days of real time would pass before a system-clock delay ended: only the fake clock moves it on.
        while (a.Changes.Count(c => c.State == SluiceClientState.Reconnecting) < 3)
        {
            time.Advance(TimeSpan.FromSeconds(5));
            Assert.True(time.GetUtcNow() < DateTimeOffset.UnixEpoch.AddYears(60), "the delays never ended");
            await Task.Delay(10);
        }

        Assert.Equal([TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(15)],
            a.Changes.Where(c => c.State == SluiceClientState.Reconnecting).Take(3).Select(c => c.Delay!.Value));
        Assert.Equal([1, 2, 3], a.Changes.Where(c => c.State == SluiceClientState.Reconnecting).Take(3).Select(c => c.Attempt));
    }
}
