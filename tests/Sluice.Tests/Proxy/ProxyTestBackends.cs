using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// A .NET backend (Sluice host mode) that records what it saw: the handshake, each connection's close status.
/// The python and node peers cover interop; this one lets tests assert what reached the backend.
/// </summary>
public sealed class RecordingBackend : IAsyncDisposable
{
    private RecordingBackend(TestServer server) => Server = server;

    public TestServer Server { get; }

    public string Authority => Server.BaseAddress.Authority;

    public ConcurrentQueue<ConnectionCloseInfo> Closes { get; } = new();

    public ConcurrentQueue<WebSocketConnection> Connections { get; } = new();

    public static async Task<RecordingBackend> StartAsync()
    {
        RecordingBackend? backend = null;
        var server = await TestServer.StartAsync(app =>
        {
            void Record(WebSocketPipelineBuilder ws)
            {
                ws.OnConnected(c => backend!.Connections.Enqueue(c));
                ws.OnClosed((c, info) => backend!.Closes.Enqueue(info));
            }

            app.MapWebSocket("/echo/{**rest}", ws =>
            {
                Record(ws);
                ws.ConfigureOptions(o => o.MaxMessageBytes = 8 * 1024 * 1024);
                ws.OnMessage((m, c) => m);
            });
            app.MapWebSocket("/headers/{**rest}", ws =>
            {
                Record(ws);
                ws.OnConnected(c => c.SendAsync(JsonSerializer.Serialize(new
                {
                    path = c.RouteValues["rest"],
                    query = c.Query.ToDictionary(q => q.Key, q => q.Value.ToString()),
                    headers = c.RequestHeaders.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()),
                    subprotocol = c.SubProtocol,
                })));
            });
            app.MapWebSocket("/protocols", ws =>
            {
                Record(ws);
                ws.ConfigureOptions(o =>
                {
                    o.SubProtocols.Add("chat.v2");
                    o.SubProtocols.Add("chat.v1");
                });
                ws.OnMessage((m, c) => m);
            });
            app.MapWebSocket("/close/{code:int}", ws =>
            {
                Record(ws);
                ws.OnMessage((m, c) =>
                {
                    _ = c.CloseAsync((WebSocketCloseStatus)int.Parse((string)c.RouteValues["code"]!, System.Globalization.CultureInfo.InvariantCulture), "backend says bye");
                });
            });
            app.MapGet("/reject", () => Results.StatusCode(403));
        });
        backend = new RecordingBackend(server);
        return backend;
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
