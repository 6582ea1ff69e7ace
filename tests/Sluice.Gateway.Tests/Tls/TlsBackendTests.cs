using System.Net;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// <c>proxy.tls</c> for wss:// backends: a CA bundle that replaces the system's trust store, and a client certificate
/// for a backend (a real Kestrel server here) that requires one.
/// </summary>
public class TlsBackendTests
{
    [Fact]
    public async Task WssBackend_RequiringAClientCertificate_IsReached_WithTheCaBundleAndTheClientCertificate_AndRefusedOtherwise()
    {
        var backendCa = TestPki.CreateCa("Backend CA");
        var otherCa = TestPki.CreateCa("Other CA");
        var backendCertificate = TestPki.Issue(backendCa, "backend");
        await using var backend = await TestServer.StartAsync(
            app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => "backend:" + m.Text)),
            configureBuilder: b =>
            {
                b.WebHost.UseUrls("https://127.0.0.1:0");
                b.WebHost.UseKestrelHttpsConfiguration();
                b.WebHost.ConfigureKestrel(k => k.ConfigureHttpsDefaults(h =>
                {
                    h.ServerCertificate = backendCertificate;
                    h.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                    h.ClientCertificateValidation = (certificate, _, _) => TestPki.ChainsTo(certificate, backendCa);
                }));
            });
        var port = backend.BaseAddress.Port;

        using var folder = new ConfigFolder();
        var certs = Directory.CreateDirectory(Path.Combine(folder.Path, "certs")).FullName;
        TestPki.Write(backendCa, Path.Combine(certs, "backend-ca.pem"));
        TestPki.Write(otherCa, Path.Combine(certs, "other-ca.pem"));
        TestPki.Write(TestPki.Issue(backendCa, "gateway client", client: true), Path.Combine(certs, "client.pem"), Path.Combine(certs, "client.key"));
        TestPki.Write(TestPki.Issue(otherCa, "stranger", client: true), Path.Combine(certs, "stranger.pem"), Path.Combine(certs, "stranger.key"));
        var path = folder.Write($$"""
            {
              "routes": [
                { "path": "/mtls", "proxy": { "target": "wss://127.0.0.1:{{port}}/echo",
                  "tls": { "ca": "certs/backend-ca.pem", "clientCertificate": "certs/client.pem", "clientKey": "certs/client.key" } } },
                { "path": "/no-client-certificate", "proxy": { "target": "wss://127.0.0.1:{{port}}/echo", "tls": { "ca": "certs/backend-ca.pem" } } },
                { "path": "/client-certificate-of-another-ca", "proxy": { "target": "wss://127.0.0.1:{{port}}/echo",
                  "tls": { "ca": "certs/backend-ca.pem", "clientCertificate": "certs/stranger.pem", "clientKey": "certs/stranger.key" } } },
                { "path": "/backend-not-signed-by-the-ca", "proxy": { "target": "wss://127.0.0.1:{{port}}/echo",
                  "tls": { "ca": "certs/other-ca.pem", "clientCertificate": "certs/client.pem", "clientKey": "certs/client.key" } } },
                { "path": "/system-store", "proxy": { "target": "wss://127.0.0.1:{{port}}/echo" } }
              ]
            }
            """);
        await using var gateway = await GatewayProcess.StartAsync(path);

        using (var client = new ClientWebSocket())
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await client.ConnectAsync(gateway.Ws("/mtls"), timeout.Token);
            Assert.Equal("backend:through mutual tls", await TlsGateway.EchoAsync(client, "through mutual tls"));
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
        }

        foreach (var route in new[] { "/no-client-certificate", "/client-certificate-of-another-ca", "/backend-not-signed-by-the-ca", "/system-store" })
        {
            using var client = new ClientWebSocket();
            client.Options.CollectHttpResponseDetails = true;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await Assert.ThrowsAsync<WebSocketException>(() => client.ConnectAsync(gateway.Ws(route), timeout.Token));
            Assert.True(client.HttpStatusCode == HttpStatusCode.BadGateway, $"{route}: {client.HttpStatusCode}");
        }

        await gateway.WaitForOutputAsync("Backend for /backend-not-signed-by-the-ca unavailable");
        var line = gateway.Output.Split('\n').Last(l => l.Contains("Backend for /backend-not-signed-by-the-ca unavailable", StringComparison.Ordinal));
        Assert.Contains("TLS handshake failed", line, StringComparison.Ordinal);
    }
}
