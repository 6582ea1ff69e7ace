using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Sluice.Tests.Infrastructure;

namespace Sluice.Tests.Proxy;

/// <summary>
/// <see cref="WebSocketProxyBuilder.BackendTls"/>: a wss:// backend (real Kestrel) with a private CA that requires a
/// client certificate, reached with a custom trust store and a client certificate, and refused (502) without them.
/// </summary>
public class BackendTlsTests
{
    [Fact]
    public async Task BackendTls_WithCustomRootTrustAndAClientCertificate_ReachesAMutualTlsBackend_AndOtherwiseGives502()
    {
        var ca = CreateCa();
        var backendCertificate = Issue(ca, "backend", "1.3.6.1.5.5.7.3.1");
        var clientCertificate = Issue(ca, "proxy", "1.3.6.1.5.5.7.3.2");
        await using var backend = await TestServer.StartAsync(
            app => app.MapWebSocket("/echo", ws => ws.OnMessage((m, c) => "mtls:" + m.Text)),
            configureBuilder: b =>
            {
                b.WebHost.UseUrls("https://127.0.0.1:0");
                b.WebHost.UseKestrelHttpsConfiguration();
                b.WebHost.ConfigureKestrel(k => k.ConfigureHttpsDefaults(h =>
                {
                    h.ServerCertificate = backendCertificate;
                    h.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                    h.ClientCertificateValidation = (certificate, _, _) => ChainsTo(certificate, ca);
                }));
            });
        var target = $"wss://127.0.0.1:{backend.BaseAddress.Port}/echo";
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(ca);
        var clientContext = SslStreamCertificateContext.Create(clientCertificate, null, offline: true);

        await using var proxy = await TestServer.StartAsync(app =>
        {
            app.MapWebSocketProxy("/mtls", target, p => p.BackendTls = _ => new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = policy.Clone(),
                ClientCertificateContext = clientContext,
            });
            app.MapWebSocketProxy("/trust-only", target, p => p.BackendTls = _ => new SslClientAuthenticationOptions { CertificateChainPolicy = policy.Clone() });
            app.MapWebSocketProxy("/defaults", target);
        });

        using (var client = await WebSocketClient.ConnectAsync(proxy.WebSocketUri("/mtls")))
        {
            await client.SendTextAsync("hello");
            Assert.Equal("mtls:hello", await client.ReceiveTextAsync());
        }

        foreach (var path in new[] { "/trust-only", "/defaults" })
        {
            using var raw = await RawWebSocket.ConnectAsync(proxy.WebSocketUri(path));
            Assert.Equal(502, raw.StatusCode);
        }

        var entry = await proxy.Logs.WaitForAsync(e => e.EventId.Id == 300 && e.Message.Contains("/defaults", StringComparison.Ordinal));
        Assert.Contains("TLS handshake failed", entry.Message, StringComparison.Ordinal);
    }

    private static X509Certificate2 CreateCa()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Sluice library test CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, string name, string usage)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        using var issued = request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(1), RandomNumberGenerator.GetBytes(8));
        return issued.CopyWithPrivateKey(key);
    }

    private static bool ChainsTo(X509Certificate2 certificate, X509Certificate2 ca)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}
