using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Sluice.Gateway.Tests.Http;

/// <summary>One request an <see cref="HttpService"/> received.</summary>
public sealed record HttpCall(string Path, IReadOnlyDictionary<string, string> Headers, string ContentType, byte[] Bytes)
{
    public string Body => System.Text.Encoding.UTF8.GetString(Bytes);
}

/// <summary>
/// A real Kestrel HTTP service on 127.0.0.1, in the test process, standing for the auth service, the webhook target
/// or an HTTP route's backend: every request is recorded in <see cref="Calls"/> and answered by the test's delegate.
/// </summary>
public sealed class HttpService : IAsyncDisposable
{
    private readonly WebApplication _app;

    private HttpService(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public Channel<HttpCall> Calls { get; } = Channel.CreateUnbounded<HttpCall>();

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    /// <summary>Starts the service; <paramref name="port"/> 0 picks a free one (give a port to start it again where it was).</summary>
    public static async Task<HttpService> StartAsync(Func<HttpContext, HttpCall, Task> respond, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(o => o.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        HttpService? service = null;
        app.Run(async context =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted);
            var call = new HttpCall(
                context.Request.Path.Value ?? string.Empty,
                context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
                context.Request.ContentType ?? string.Empty,
                body.ToArray());
            service!.Calls.Writer.TryWrite(call);
            await respond(context, call);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        service = new HttpService(app, new Uri(address).Port);
        return service;
    }

    /// <summary>A service that answers every request with <paramref name="status"/> and <paramref name="body"/> (JSON).</summary>
    public static Task<HttpService> AnswerAsync(int status, string? body = null, int port = 0) =>
        StartAsync(async (context, _) =>
        {
            context.Response.StatusCode = status;
            if (body is not null)
            {
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(body);
            }
        }, port);

    /// <summary>The next request, within <paramref name="timeout"/> (default 20 s).</summary>
    public async Task<HttpCall> NextCallAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        return await Calls.Reader.ReadAsync(cts.Token);
    }

    public async Task StopAsync() => await _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
        }

        await _app.DisposeAsync();
    }
}
