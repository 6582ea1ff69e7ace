using System.Net;
using System.Net.Http;
using System.Net.WebSockets;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// TLS on the gateway's own listeners (docs/gateway-contract.md, "TLS on the gateway's own listeners"): wss:// for
/// .NET, python and node clients, WebSockets over HTTP/2 by ALPN, and certificates that change on disk while
/// connections stay open.
/// </summary>
public class TlsListenerTests
{
    [Fact]
    public async Task WssClients_DotNetPythonAndNode_EchoThroughTheHttpsListener()
    {
        await using var tls = await TlsGateway.StartAsync();

        using (var client = await tls.ConnectAsync("/echo"))
        {
            Assert.Equal("over tls", await TlsGateway.EchoAsync(client, "over tls"));
            await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
        }

        Assert.Equal("OK order", await tls.RunPeerAsync(PeerKind.Python, "/echo", "order"));
        Assert.Equal("OK order", await tls.RunPeerAsync(PeerKind.Node, "/echo", "order"));
        await tls.Gateway.WaitForOutputAsync($"wss://127.0.0.1:{tls.HttpsPort}/echo");
    }

    [Fact]
    public async Task Http2_IsOfferedByAlpn_AndCarriesWebSockets_Rfc8441()
    {
        await using var tls = await TlsGateway.StartAsync();
        using var handler = tls.Handler();
        using var invoker = new HttpMessageInvoker(handler);

        using var http = new HttpClient(tls.Handler());
        using var health = await http.SendAsync(new HttpRequestMessage(HttpMethod.Get, tls.Https("/_sluice/healthz"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        });
        Assert.Equal(HttpVersion.Version20, health.Version);

        using var client = new ClientWebSocket();
        client.Options.HttpVersion = HttpVersion.Version20;
        client.Options.HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact;
        client.Options.CollectHttpResponseDetails = true;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await client.ConnectAsync(tls.Wss("/echo"), invoker, timeout.Token);

        // 200 to an extended CONNECT, where HTTP/1.1 answers 101.
        Assert.Equal(HttpStatusCode.OK, client.HttpStatusCode);
        Assert.Equal("h2 hello", await TlsGateway.EchoAsync(client, "h2 hello"));
        await client.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, client.CloseStatus);
    }

    [Fact]
    public async Task NewCertificateOnDisk_ReachesNewHandshakes_WhileAnOpenConnectionStaysOpen()
    {
        await using var tls = await TlsGateway.StartAsync();
        using var open = await tls.ConnectAsync("/echo");
        Assert.Equal("before", await TlsGateway.EchoAsync(open, "before"));
        using (var first = await TestPki.PresentedCertificateAsync(tls.HttpsPort, tls.Ca))
        {
            Assert.Equal(tls.Certificate.Thumbprint, first.Thumbprint);
        }

        // Key first, then certificate, as a renewal script might: the half-written pair is not judged.
        var renewed = TestPki.Issue(tls.Ca, "gateway two");
        File.WriteAllText(tls.KeyPath, TestPki.KeyPem(renewed));
        TestPki.Write(renewed, tls.CertificatePath);

        Assert.True(await TestPki.WaitForPresentedAsync(tls.HttpsPort, tls.Ca, renewed, TimeSpan.FromSeconds(30)), "new handshakes never got the renewed certificate");
        Assert.Equal("after", await TlsGateway.EchoAsync(open, "after"));
        Assert.Equal(WebSocketState.Open, open.State);
        using var fresh = await tls.ConnectAsync("/echo");
        Assert.Equal("fresh", await TlsGateway.EchoAsync(fresh, "fresh"));
        await tls.Gateway.WaitForOutputAsync("TLS certificate loaded for new handshakes: CN=gateway two");
        Assert.DoesNotContain("cannot be used", tls.Gateway.Output, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> BadFiles => new()
    {
        { "garbage", "tls.certificate: 'certs/gateway.pem' is not a PEM certificate" },
        { "expired", "tls.certificate: 'certs/gateway.pem' expired on" },
        { "other-key", "tls.key: 'certs/gateway.key' does not match the certificate 'certs/gateway.pem'" },
        { "not-a-key", "tls.key: 'certs/gateway.key' is not a PEM private key" },
        { "missing", "tls.certificate: 'certs/gateway.pem' not found" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public async Task BadCertificateOnDisk_IsLoggedWithTheReason_AndTheCertificateInUseStays(string change, string logged)
    {
        await using var tls = await TlsGateway.StartAsync();
        using var open = await tls.ConnectAsync("/echo");

        Spoil(tls, change);

        await tls.Gateway.WaitForOutputAsync(logged, TimeSpan.FromSeconds(30));
        Assert.Contains("The certificate in use stays: CN=gateway one", tls.Gateway.Output, StringComparison.Ordinal);
        using (var presented = await TestPki.PresentedCertificateAsync(tls.HttpsPort, tls.Ca))
        {
            Assert.Equal(tls.Certificate.Thumbprint, presented.Thumbprint);
        }

        using var fresh = await tls.ConnectAsync("/echo");
        Assert.Equal("still", await TlsGateway.EchoAsync(fresh, "still"));
        Assert.Equal("open", await TlsGateway.EchoAsync(open, "open"));

        // Once good files arrive, they are used.
        var good = TestPki.Issue(tls.Ca, "gateway three");
        TestPki.Write(good, tls.CertificatePath, tls.KeyPath);
        Assert.True(await TestPki.WaitForPresentedAsync(tls.HttpsPort, tls.Ca, good, TimeSpan.FromSeconds(30)), "the good certificate after the bad one was never used");
    }

    [Fact]
    public async Task ReloadNamingABadCertificate_IsRejected_AndTheCertificateInUseStays()
    {
        await using var tls = await TlsGateway.StartAsync();
        var other = TestPki.Issue(tls.Ca, "gateway other");
        TestPki.Write(other, Path.Combine(tls.Folder.Path, "certs", "other.pem"));
        File.WriteAllText(Path.Combine(tls.Folder.Path, "certs", "other.key"), TestPki.KeyPem(tls.Certificate));

        tls.Folder.Write(TlsGateway.EchoConfig.Replace("gateway.pem", "other.pem", StringComparison.Ordinal).Replace("gateway.key", "other.key", StringComparison.Ordinal));

        await tls.Gateway.WaitForOutputAsync("tls.key: 'certs/other.key' does not match the certificate 'certs/other.pem'", TimeSpan.FromSeconds(30));
        Assert.Contains("rejected", tls.Gateway.Output, StringComparison.Ordinal);
        using var presented = await TestPki.PresentedCertificateAsync(tls.HttpsPort, tls.Ca);
        Assert.Equal(tls.Certificate.Thumbprint, presented.Thumbprint);
    }

    [Fact]
    public async Task ReloadNamingNewCertificateFiles_SwitchesNewHandshakesToThem()
    {
        await using var tls = await TlsGateway.StartAsync();
        using var open = await tls.ConnectAsync("/echo");
        var other = TestPki.Issue(tls.Ca, "gateway other");
        TestPki.Write(other, Path.Combine(tls.Folder.Path, "certs", "other.pem"), Path.Combine(tls.Folder.Path, "certs", "other.key"));

        tls.Folder.Write(TlsGateway.EchoConfig.Replace("gateway.pem", "other.pem", StringComparison.Ordinal).Replace("gateway.key", "other.key", StringComparison.Ordinal));

        Assert.True(await TestPki.WaitForPresentedAsync(tls.HttpsPort, tls.Ca, other, TimeSpan.FromSeconds(30)), "the reloaded configuration's certificate was never used");
        Assert.Equal("open", await TlsGateway.EchoAsync(open, "open"));
    }

    private static void Spoil(TlsGateway tls, string change)
    {
        switch (change)
        {
            case "garbage":
                File.WriteAllText(tls.CertificatePath, "this is not a certificate\n");
                break;
            case "expired":
                var expired = TestPki.Issue(tls.Ca, "gateway expired", notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
                TestPki.Write(expired, tls.CertificatePath, tls.KeyPath);
                break;
            case "other-key":
                File.WriteAllText(tls.KeyPath, TestPki.KeyPem(TestPki.Issue(tls.Ca, "someone else")));
                break;
            case "not-a-key":
                File.WriteAllText(tls.KeyPath, tls.Certificate.ExportCertificatePem());
                break;
            case "missing":
                File.Delete(tls.CertificatePath);
                break;
        }
    }
}
