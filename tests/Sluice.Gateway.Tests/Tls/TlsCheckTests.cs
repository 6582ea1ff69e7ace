using System.Security.Cryptography.X509Certificates;
using Sluice.Gateway.Tests.Infrastructure;

namespace Sluice.Gateway.Tests.Tls;

/// <summary>
/// <c>--check</c> and the start refuse certificate files that cannot be used, naming <c>tls.certificate</c>,
/// <c>tls.key</c> or <c>routes[i].proxy.tls.*</c> with the reason; an https:// address needs <c>tls</c>.
/// </summary>
public class TlsCheckTests
{
    public static TheoryData<string, string> BadFiles => new()
    {
        { "missing", "tls.certificate: 'certs/gateway.pem' not found (" },
        { "unreadable", "tls.certificate: 'certs/gateway.pem' cannot be read: " },
        { "not-pem", "tls.certificate: 'certs/gateway.pem' is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)" },
        { "expired", "tls.certificate: 'certs/gateway.pem' expired on " },
        { "not-yet-valid", "tls.certificate: 'certs/gateway.pem' is not valid before " },
        { "client-only", "tls.certificate: 'certs/gateway.pem' is not for server authentication" },
        { "key-missing", "tls.key: 'certs/gateway.key' not found (" },
        { "key-not-pem", "tls.key: 'certs/gateway.key' is not a PEM private key" },
        { "key-encrypted", "tls.key: 'certs/gateway.key' is an encrypted private key" },
        { "key-mismatch", "tls.key: 'certs/gateway.key' does not match the certificate 'certs/gateway.pem'" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public async Task Check_NamesTheFile_AndTheReason(string change, string expected)
    {
        await using var tls = await TlsGateway.StartAsync(start: false);
        Spoil(tls, change);

        var (exitCode, output, error) = await GatewayProcess.RunAsync("--check", "--config", tls.Folder.ConfigPath);

        Assert.Equal(1, exitCode);
        Assert.Equal(string.Empty, output);
        var line = Assert.Single(error.Split('\n'));
        Assert.StartsWith(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_WithABadCertificate_Exits1_WithTheSameError()
    {
        await using var tls = await TlsGateway.StartAsync(start: false);
        Spoil(tls, "key-mismatch");

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--config", tls.Folder.ConfigPath, "--urls", $"https://127.0.0.1:{GatewayProcess.FreePort()}");

        Assert.Equal(1, exitCode);
        Assert.StartsWith("tls.key: 'certs/gateway.key' does not match the certificate", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Check_OfValidFiles_WithTheKeyFromTheEnvironment_Exits0()
    {
        await using var tls = await TlsGateway.StartAsync(TlsGateway.EchoConfig.Replace("\"certs/gateway.key\"", "\"env:SLUICE_TEST_TLS_KEY\"", StringComparison.Ordinal), start: false);
        var environment = new Dictionary<string, string> { ["SLUICE_TEST_TLS_KEY"] = File.ReadAllText(tls.KeyPath) };

        var (exitCode, output, error) = await GatewayProcess.RunAsync(["--check", "--config", tls.Folder.ConfigPath], environment);
        Assert.Equal(0, exitCode);
        Assert.Contains("valid", output, StringComparison.Ordinal);
        Assert.Equal(string.Empty, error);

        // A key from the environment that does not match is named without its text.
        environment["SLUICE_TEST_TLS_KEY"] = TestPki.KeyPem(TestPki.Issue(tls.Ca, "someone else"));
        (exitCode, _, error) = await GatewayProcess.RunAsync(["--check", "--config", tls.Folder.ConfigPath], environment);
        Assert.Equal(1, exitCode);
        Assert.StartsWith("tls.key: the key's PEM text does not match the certificate 'certs/gateway.pem'", error, StringComparison.Ordinal);
        Assert.DoesNotContain("PRIVATE KEY", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HttpsAddress_WithoutTls_IsAnErrorAtListen_OrNamesUrls()
    {
        using var folder = new ConfigFolder();
        var listen = folder.Write("""{ "listen": ["http://127.0.0.1:8080", "https://127.0.0.1:8443"], "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""");
        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", listen);
        Assert.Equal(1, exitCode);
        Assert.Equal("listen[1]: 'https://127.0.0.1:8443' needs a certificate: add \"tls\": { \"certificate\": \"FILE.pem\", \"key\": \"FILE.key\" }", error);

        var plain = folder.Write("""{ "routes": [ { "path": "/echo", "handler": { "type": "echo" } } ] }""", "plain.json");
        var url = $"https://127.0.0.1:{GatewayProcess.FreePort()}";
        (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", plain, "--urls", url);
        Assert.Equal(1, exitCode);
        Assert.StartsWith($"--urls: '{url}' needs a certificate", error, StringComparison.Ordinal);

        (exitCode, _, error) = await GatewayProcess.RunAsync("--config", plain, "--urls", url);
        Assert.Equal(1, exitCode);
        Assert.StartsWith($"--urls: '{url}' needs a certificate", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProxyTls_BadFiles_AreNamedWithTheirJsonPath()
    {
        await using var tls = await TlsGateway.StartAsync(start: false);
        File.WriteAllText(Path.Combine(tls.Folder.Path, "certs", "client.key"), TestPki.KeyPem(TestPki.Issue(tls.Ca, "not the client")));
        TestPki.Write(TestPki.Issue(tls.Ca, "client", client: true), Path.Combine(tls.Folder.Path, "certs", "client.pem"));
        var path = tls.Folder.Write("""
            {
              "routes": [
                { "path": "/a", "proxy": { "target": "wss://127.0.0.1:1/a", "tls": { "ca": "certs/nope.pem" } } },
                { "path": "/b", "proxy": { "target": "wss://127.0.0.1:1/b", "tls": { "ca": "certs/gateway.key" } } },
                { "path": "/c", "proxy": { "target": "wss://127.0.0.1:1/c", "tls": { "clientCertificate": "certs/client.pem" } } },
                { "path": "/d", "proxy": { "target": "wss://127.0.0.1:1/d", "tls": { "ca": "certs/ca.pem", "clientCertificate": "certs/client.pem", "clientKey": "certs/client.key" } } },
                { "path": "/e", "proxy": { "target": "wss://127.0.0.1:1/e", "tls": { "ca": "certs/ca.pem", "clientCertificate": "certs/gateway.pem", "clientKey": "certs/gateway.key" } } },
                { "path": "/f", "proxy": { "target": "wss://127.0.0.1:1/f", "tls": { "ca": "certs/ca.pem", "clientCertificate": "certs/gateway.pem", "colientKey": "x" } } }
              ]
            }
            """, "proxy.json");

        var (exitCode, _, error) = await GatewayProcess.RunAsync("--check", "--config", path);

        Assert.Equal(1, exitCode);
        var lines = error.Split('\n');
        Assert.StartsWith("routes[0].proxy.tls.ca: 'certs/nope.pem' not found (", lines[0], StringComparison.Ordinal);
        Assert.Equal("routes[1].proxy.tls.ca: 'certs/gateway.key' is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)", lines[1]);
        Assert.Equal("routes[2].proxy.tls.clientKey: is required with clientCertificate", lines[2]);
        Assert.StartsWith("routes[3].proxy.tls.clientKey: 'certs/client.key' does not match the certificate 'certs/client.pem'", lines[3], StringComparison.Ordinal);
        Assert.StartsWith("routes[4].proxy.tls.clientCertificate: 'certs/gateway.pem' is not for client authentication", lines[4], StringComparison.Ordinal);
        Assert.StartsWith("routes[5].proxy.tls.colientKey: unknown key; did you mean 'clientKey'?", lines[5], StringComparison.Ordinal);
        Assert.Equal(7, lines.Length);
        Assert.Equal("routes[5].proxy.tls.clientKey: is required with clientCertificate", lines[6]);
    }

    private static void Spoil(TlsGateway tls, string change)
    {
        switch (change)
        {
            case "missing":
                File.Delete(tls.CertificatePath);
                break;
            case "unreadable":
                // The tests may run as root, whom file modes do not stop: a folder in the file's place cannot be read by anyone.
                File.Delete(tls.CertificatePath);
                Directory.CreateDirectory(tls.CertificatePath);
                break;
            case "not-pem":
                File.WriteAllBytes(tls.CertificatePath, tls.Certificate.RawData);
                break;
            case "expired":
                TestPki.Write(TestPki.Issue(tls.Ca, "old", notBefore: DateTimeOffset.UtcNow.AddDays(-30), notAfter: DateTimeOffset.UtcNow.AddDays(-2)), tls.CertificatePath, tls.KeyPath);
                break;
            case "not-yet-valid":
                TestPki.Write(TestPki.Issue(tls.Ca, "future", notBefore: DateTimeOffset.UtcNow.AddDays(2), notAfter: DateTimeOffset.UtcNow.AddDays(30)), tls.CertificatePath, tls.KeyPath);
                break;
            case "client-only":
                TestPki.Write(TestPki.Issue(tls.Ca, "client", client: true), tls.CertificatePath, tls.KeyPath);
                break;
            case "key-missing":
                File.Delete(tls.KeyPath);
                break;
            case "key-not-pem":
                File.WriteAllText(tls.KeyPath, "not a key\n");
                break;
            case "key-encrypted":
                var encrypted = tls.Certificate.GetECDsaPrivateKey()!.ExportEncryptedPkcs8PrivateKeyPem(
                    "secret", new System.Security.Cryptography.PbeParameters(System.Security.Cryptography.PbeEncryptionAlgorithm.Aes256Cbc, System.Security.Cryptography.HashAlgorithmName.SHA256, 1000));
                File.WriteAllText(tls.KeyPath, encrypted);
                break;
            case "key-mismatch":
                File.WriteAllText(tls.KeyPath, TestPki.KeyPem(TestPki.Issue(tls.Ca, "someone else")));
                break;
        }
    }
}
