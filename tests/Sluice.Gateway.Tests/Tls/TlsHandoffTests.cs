using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Gateway.Hosting;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// The gateway's listener defaults (<see cref="GatewayApplication.HandoffDefaults"/>): on an https:// address the
/// upgrade handoff runs inside TLS, so a wss:// connection leaves its request as a ws:// one does.
/// </summary>
public class TlsHandoffTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task OverWsAndWss_TheRequestEnds_AndTheConnectionGoesOn()
    {
        using var ca = TestPki.CreateCa("handoff test CA");
        using var leaf = TestPki.Issue(ca, "127.0.0.1");
        const string Urls = "http://127.0.0.1:0;https://127.0.0.1:0";
        var ended = new RequestEndings();
        await using var server = await TestServer.StartAsync(
            app =>
            {
                ended.Track(app);
                app.MapWebSocket("/echo/{scheme}", ws => ws.OnMessage((m, c) => $"{c.RouteValues["scheme"]}:{m.Text}"));
            },
            configureBuilder: builder =>
            {
                builder.WebHost.UseUrls(Urls);
                builder.WebHost.UseKestrelHttpsConfiguration();
                builder.WebHost.ConfigureKestrel(o =>
                {
                    o.ConfigureHttpsDefaults(https => https.ServerCertificate = leaf);
                    o.ConfigureEndpointDefaults(GatewayApplication.HandoffDefaults(Urls));
                });
            });
        var addresses = server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();

        foreach (var address in addresses)
        {
            var scheme = address.Scheme == "https" ? "wss" : "ws";
            using var client = await WebSocketClient.ConnectAsync(
                new Uri($"{scheme}://{address.Authority}/echo/{scheme}"),
                o => o.RemoteCertificateValidationCallback = (_, presented, _, _) => TestPki.ChainsTo(presented, ca));

            await client.SendTextAsync("a");
            Assert.Equal($"{scheme}:a", await client.ReceiveTextAsync());
            await ended.Of($"/echo/{scheme}").WaitAsync(Wait);
            await client.SendTextAsync("b");
            Assert.Equal($"{scheme}:b", await client.ReceiveTextAsync());
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
        }

        Assert.Equal(["https", "http"], addresses.Select(a => a.Scheme).Order().Reverse());

        // Plain HTTP still works on both listeners through the same defaults.
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, presented, _, _) => TestPki.ChainsTo(presented, ca) };
        using var http = new HttpClient(handler);
        foreach (var address in addresses)
        {
            Assert.Equal(StatusCodes.Status404NotFound, (int)(await http.GetAsync(new Uri(address, "/nothing-here"))).StatusCode);
        }
    }
}
