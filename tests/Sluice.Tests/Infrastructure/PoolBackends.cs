using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Sluice.Tests.Infrastructure;

/// <summary>How a <see cref="NamedBackend"/> answers its health endpoint.</summary>
public enum HealthAnswer
{
    Ok,
    Status500,
    Hang,
    CutMidResponse,
}

/// <summary>
/// A Kestrel backend of a pool: its WebSocket route (<c>/ws/{**rest}</c>) sends the backend's name on connect, then
/// echoes; <c>/healthz</c> answers as <see cref="Health"/> says, and counts the checks it is holding open.
/// </summary>
public sealed class NamedBackend : IAsyncDisposable
{
    private int _healthRequests;
    private int _healthInFlight;

    private NamedBackend(string name) => Name = name;

    public string Name { get; }

    public TestServer Server { get; private set; } = null!;

    public string Authority => Server.BaseAddress.Authority;

    private volatile HealthAnswer _health;

    public HealthAnswer Health { get => _health; set => _health = value; }

    public int HealthRequests => Volatile.Read(ref _healthRequests);

    /// <summary>Health requests the backend is still serving: a hanging check whose client gave up is not one of them.</summary>
    public int HealthInFlight => Volatile.Read(ref _healthInFlight);

    public static async Task<NamedBackend> StartAsync(string name)
    {
        var backend = new NamedBackend(name);
        backend.Server = await TestServer.StartAsync(app =>
        {
            app.MapWebSocket("/ws/{**rest}", ws =>
            {
                ws.OnConnected(c => c.SendAsync(name));
                ws.OnMessage((m, c) => m);
            });
            app.MapGet("/healthz", backend.AnswerHealthAsync);
        });
        return backend;
    }

    private async Task AnswerHealthAsync(HttpContext context)
    {
        Interlocked.Increment(ref _healthRequests);
        Interlocked.Increment(ref _healthInFlight);
        try
        {
            switch (Health)
            {
                case HealthAnswer.Ok:
                    await context.Response.WriteAsync("ok");
                    break;
                case HealthAnswer.Status500:
                    context.Response.StatusCode = 500;
                    await context.Response.WriteAsync("broken");
                    break;
                case HealthAnswer.Hang:
                    await Task.Delay(Timeout.Infinite, context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    break;
                case HealthAnswer.CutMidResponse:
                    // A 200 that promises 100 bytes and breaks off after 2: only a check that reads the body notices.
                    context.Response.ContentLength = 100;
                    await context.Response.WriteAsync("ok");
                    await context.Response.Body.FlushAsync();
                    context.Abort();
                    break;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _healthInFlight);
        }
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}

/// <summary>A port that accepts TCP connections and never says a word: the handshake never completes.</summary>
public sealed class SilentListener : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly List<Socket> _accepted = [];
    private readonly CancellationTokenSource _stop = new();

    public SilentListener()
    {
        _listener.Start();
        _ = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string Authority => $"127.0.0.1:{Port}";

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptSocketAsync(_stop.Token);
                lock (_accepted)
                {
                    _accepted.Add(socket);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        lock (_accepted)
        {
            _accepted.ForEach(s => s.Dispose());
        }

        _stop.Dispose();
    }
}

public static class Ports
{
    /// <summary>A loopback port nothing listens on: connecting is refused.</summary>
    public static int Closed()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
