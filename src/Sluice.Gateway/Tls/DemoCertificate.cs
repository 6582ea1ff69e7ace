using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Sluice.Gateway.Tls;

/// <summary>
/// The embedded demo's certificate for <c>--urls https://...</c>: self-signed for localhost, 127.0.0.1 and ::1, made
/// at start and never written anywhere. Browsers warn about it; it is there to try wss:// and HTTP/2, not to trust.
/// </summary>
internal static class DemoCertificate
{
    public static LoadedCertificate Create()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Sluice demo self-signed", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(7));
        if (OperatingSystem.IsWindows())
        {
            var pfx = certificate.Export(X509ContentType.Pkcs12);
            certificate.Dispose();
            certificate = X509CertificateLoader.LoadPkcs12(pfx, null);
        }

        return new LoadedCertificate(certificate, [], "demo:" + certificate.Thumbprint);
    }
}
