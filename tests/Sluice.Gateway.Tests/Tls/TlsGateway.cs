using System.Diagnostics;
using System.Net;
using System.Net.Http;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using Sluice.Gateway.Tests.Infrastructure;
using Sluice.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// A config folder with a test CA and a gateway certificate issued by it (certs/gateway.pem, certs/gateway.key), and
/// the gateway process listening on https:// (and, when asked, http:// too) with that certificate.
/// </summary>
public sealed class TlsGateway : IAsyncDisposable
{
    private TlsGateway(ConfigFolder folder, X509Certificate2 ca, X509Certificate2 certificate)
    {
        Folder = folder;
        Ca = ca;
        Certificate = certificate;
        CaPath = Path.Combine(folder.Path, "certs", "ca.pem");
        TestPki.Write(ca, CaPath);
        TestPki.Write(certificate, CertificatePath, KeyPath);
    }

    public ConfigFolder Folder { get; }

    public X509Certificate2 Ca { get; }

    public X509Certificate2 Certificate { get; }

    public string CaPath { get; }

    public string CertificatePath => Path.Combine(Folder.Path, "certs", "gateway.pem");

    public string KeyPath => Path.Combine(Folder.Path, "certs", "gateway.key");

    public GatewayProcess Gateway { get; private set; } = null!;

    public int HttpsPort { get; private set; }

    public int HttpPort { get; private set; }

    public const string EchoConfig = """
        {
          "tls": { "certificate": "certs/gateway.pem", "key": "certs/gateway.key" },
          "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ]
        }
        """;

    /// <summary>Writes the certificates and <paramref name="config"/>; starts the gateway unless told not to.</summary>
    public static async Task<TlsGateway> StartAsync(string config = EchoConfig, bool alsoHttp = false, IDictionary<string, string>? environment = null, bool start = true)
    {
        var folder = new ConfigFolder();
        Directory.CreateDirectory(Path.Combine(folder.Path, "certs"));
        var ca = TestPki.CreateCa("Sluice test CA");
        var gateway = new TlsGateway(folder, ca, TestPki.Issue(ca, "gateway one"));
        folder.Write(config);
        if (start)
        {
            gateway.HttpsPort = GatewayProcess.FreePort();
            gateway.HttpPort = alsoHttp ? GatewayProcess.FreePort() : 0;
            var urls = $"https://127.0.0.1:{gateway.HttpsPort}" + (alsoHttp ? $";http://127.0.0.1:{gateway.HttpPort}" : string.Empty);
            gateway.Gateway = await GatewayProcess.StartAsync(folder.ConfigPath, environment, urls);
        }

        return gateway;
    }

    public Uri Wss(string pathAndQuery) => new($"wss://127.0.0.1:{HttpsPort}{pathAndQuery}");

    public Uri Https(string pathAndQuery) => new($"https://127.0.0.1:{HttpsPort}{pathAndQuery}");

    /// <summary>A handler that trusts the test CA only (and any certificate it issued).</summary>
    public SocketsHttpHandler Handler() => new()
    {
        UseCookies = false,
        AllowAutoRedirect = false,
        SslOptions = { RemoteCertificateValidationCallback = (_, certificate, _, _) => TestPki.ChainsTo(certificate, Ca) },
    };

    /// <summary>A WebSocket client over HTTP/1.1 that trusts the test CA.</summary>
    public async Task<ClientWebSocket> ConnectAsync(string path)
    {
        var client = new ClientWebSocket();
        client.Options.RemoteCertificateValidationCallback = (_, certificate, _, _) => TestPki.ChainsTo(certificate, Ca);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await client.ConnectAsync(Wss(path), timeout.Token);
        return client;
    }

    /// <summary>Runs a client scenario of tests/interop (python websockets or node ws) trusting the test CA.</summary>
    public async Task<string> RunPeerAsync(PeerKind kind, string path, string scenario)
    {
        var info = kind == PeerKind.Python
            ? new ProcessStartInfo("/usr/bin/python3") { ArgumentList = { Path.Combine(ExternalPeer.InteropDirectory, "peer.py") } }
            : new ProcessStartInfo("node") { ArgumentList = { Path.Combine(ExternalPeer.InteropDirectory, "peer.mjs") } };
        info.ArgumentList.Add("client");
        info.ArgumentList.Add(Wss(path).ToString());
        info.ArgumentList.Add(scenario);
        // Each runtime's own way to trust one more CA: OpenSSL's SSL_CERT_FILE (python's default context), node's NODE_EXTRA_CA_CERTS.
        info.Environment[kind == PeerKind.Python ? "SSL_CERT_FILE" : "NODE_EXTRA_CA_CERTS"] = CaPath;
        info.Environment["PEER_DEFLATE"] = "0";
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.WorkingDirectory = ExternalPeer.InteropDirectory;
        using var process = Process.Start(info)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        var last = (await output).Trim().Split('\n').Last();
        return process.ExitCode == 0 ? last : $"exit {process.ExitCode}: {last} {await error}";
    }

    public async ValueTask DisposeAsync()
    {
        if (Gateway is not null)
        {
            await Gateway.DisposeAsync();
        }

        Folder.Dispose();
    }

    /// <summary>Sends one text message and reads the answer.</summary>
    public static async Task<string> EchoAsync(WebSocket socket, string text)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await socket.SendAsync(System.Text.Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, timeout.Token);
        var buffer = new byte[64 * 1024];
        var received = await socket.ReceiveAsync(buffer, timeout.Token);
        return System.Text.Encoding.UTF8.GetString(buffer, 0, received.Count);
    }

    public static HttpStatusCode StatusOf(ClientWebSocket socket) => socket.HttpStatusCode;
}
