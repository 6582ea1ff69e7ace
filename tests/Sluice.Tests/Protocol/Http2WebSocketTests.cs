using System.Net;
using System.Net.Http;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Protocol;

/// <summary>WebSockets over HTTP/2 (RFC 8441 extended CONNECT), as browsers may use over TLS.</summary>
public class Http2WebSocketTests
{
    [Fact]
    public async Task Http2ExtendedConnect_IsAccepted_ByHostedAndProxiedEndpoints()
    {
        await using var backend = await TestServer.StartAsync(app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => "h2:" + m.Text)));
        await using var server = await TestServer.StartAsync(
            app =>
            {
                app.MapWebSocket("/hosted", ws => ws.OnMessage((m, c) => m));
                app.MapWebSocketProxy("/proxied", $"ws://{backend.BaseAddress.Authority}/echo");
            },
            configureBuilder: b => b.WebHost.ConfigureKestrel(k => k.ConfigureEndpointDefaults(l => l.Protocols = HttpProtocols.Http2)));

        foreach (var (path, expected) in new[] { ("/hosted", "hello"), ("/proxied", "h2:hello") })
        {
            using var handler = new SocketsHttpHandler();
            using var invoker = new HttpMessageInvoker(handler);
            using var client = new ClientWebSocket();
            client.Options.HttpVersion = HttpVersion.Version20;
            client.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
            client.Options.CollectHttpResponseDetails = true;
            await client.ConnectAsync(server.WebSocketUri(path), invoker, CancellationToken.None);

            Assert.Equal(HttpStatusCode.OK, client.HttpStatusCode);
            await client.SendTextAsync("hello");
            Assert.Equal(expected, await client.ReceiveTextAsync());
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
            Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
        }
    }
}
