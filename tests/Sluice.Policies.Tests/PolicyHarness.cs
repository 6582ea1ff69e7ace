using Microsoft.AspNetCore.Builder;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>How a policy test reaches the policy: hosted, or proxied to a backend.</summary>
public enum Mode
{
    Host,
    Proxy,
}

/// <summary>
/// The same pipeline on a hosted echo endpoint and on a proxy to a hosted echo backend, so that every policy
/// test runs in both modes through real sockets. The backend records what reached it.
/// </summary>
public sealed class PolicyHarness : IAsyncDisposable
{
    private readonly TestServer _backend;
    private readonly TestServer _server;

    private PolicyHarness(TestServer backend, TestServer server, List<string> backendReceived, List<ConnectionCloseInfo> backendCloses)
    {
        _backend = backend;
        _server = server;
        BackendReceived = backendReceived;
        BackendCloses = backendCloses;
    }

    public TestServer Server => _server;

    /// <summary>Text messages that reached the proxy's backend (proxy mode only).</summary>
    public List<string> BackendReceived { get; }

    public List<ConnectionCloseInfo> BackendCloses { get; }

    public static Task<PolicyHarness> StartAsync(Action<WebSocketPipelineBuilder> configure, Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null) =>
        StartAsync((pipeline, _) => configure(pipeline), services);

    public static async Task<PolicyHarness> StartAsync(Action<WebSocketPipelineBuilder, IServiceProvider> configure, Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null)
    {
        var received = new List<string>();
        var closes = new List<ConnectionCloseInfo>();
        var backend = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws =>
        {
            ws.OnMessage((m, c) =>
            {
                if (m.IsText)
                {
                    lock (received)
                    {
                        received.Add(m.Text);
                    }
                }

                return m;
            });
            ws.OnClosed((c, info) =>
            {
                lock (closes)
                {
                    closes.Add(info);
                }
            });
        }));
        var server = await TestServer.StartAsync(
            app =>
            {
                app.MapWebSocket("/host", ws =>
                {
                    configure(ws, app.Services);
                    ws.OnMessage((m, c) => m);
                });
                app.MapWebSocketProxy("/proxy", $"ws://{backend.BaseAddress.Authority}/echo", proxy => configure(proxy, app.Services));
            },
            services);
        return new PolicyHarness(backend, server, received, closes);
    }

    public Uri Uri(Mode mode, string query = "") => _server.WebSocketUri((mode == Mode.Host ? "/host" : "/proxy") + query);

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        await _backend.DisposeAsync();
    }
}
