using System.Net.WebSockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Sluice.Diagnostics;

namespace Sluice;

/// <summary>
/// One timer for every connection: once a second it lets each connection send keep-alive pings, notice a
/// silent peer and apply its idle timeout. A shared timer costs nothing per idle connection, where a timer
/// per connection would cost an allocation and a timer-queue entry each. It also closes every connection
/// with 1001 when the app stops.
/// </summary>
internal sealed class ConnectionMonitor : IHostedService, IDisposable
{
    private static readonly TimeSpan s_period = TimeSpan.FromSeconds(1);

    private readonly WebSocketConnectionRegistry _registry;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;
    private CancellationTokenRegistration _stoppingRegistration;

    public ConnectionMonitor(
        WebSocketConnectionRegistry registry,
        IHostApplicationLifetime lifetime,
        ILogger<ConnectionMonitor> logger,
        TimeProvider time)
    {
        _time = time;
        _registry = registry;
        _lifetime = lifetime;
        _logger = logger;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loop = TickAsync(_stopping.Token);

        // ApplicationStopping fires before the server stops, while Kestrel still waits for requests (our
        // connections) to finish: the moment to start every close handshake.
        _stoppingRegistration = _lifetime.ApplicationStopping.Register(static state => ((ConnectionMonitor)state!).CloseAll(), this);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        CloseAll();
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    public void Dispose()
    {
        _stoppingRegistration.Dispose();
        _stopping.Dispose();
    }

    /// <summary>
    /// Starts a 1001 close on every connection. The server then waits for them to end, up to the host's
    /// <see cref="HostOptions.ShutdownTimeout"/>, before aborting what is left.
    /// </summary>
    internal void CloseAll()
    {
        if (_registry.IsStopping)
        {
            return;
        }

        _registry.MarkStopping();
        var connections = _registry.Snapshot();
        if (connections.Count == 0)
        {
            return;
        }

        SluiceLog.ShuttingDown(_logger, connections.Count);
        foreach (var connection in connections)
        {
            connection.BeginClose(WebSocketCloseStatus.EndpointUnavailable, "server shutting down", ConnectionCloseInitiator.Server);
        }
    }

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(s_period, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var now = _time.GetTimestamp();
                foreach (var connection in _registry.Snapshot())
                {
                    connection.OnTick(now);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
