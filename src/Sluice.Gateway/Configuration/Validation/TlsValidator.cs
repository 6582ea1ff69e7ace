using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Sluice.Gateway.Configuration.Model;
using Sluice.Gateway.Tls;

namespace Sluice.Gateway.Configuration.Validation;

/// <summary>
/// Checks <c>tls</c> and every route's <c>proxy.tls</c> by loading their files, so that <c>--check</c>, the start and a
/// reload all refuse a certificate that cannot be used, with the reason at its path.
/// </summary>
internal static class TlsValidator
{
    /// <summary>The listeners' certificate; null when <c>tls</c> is absent or has errors.</summary>
    public static LoadedCertificate? LoadServer(TlsModel? tls, string baseDirectory, DateTimeOffset now, ConfigErrors errors) =>
        tls is null || errors.AnyAtOrUnder("tls")
            ? null
            : PemCertificates.LoadWithKey(tls.Certificate, tls.Key, baseDirectory, "tls.certificate", "tls.key", server: true, now, errors);

    /// <summary>Each route's TLS options for its backend (null without <c>proxy.tls</c>), by index.</summary>
    public static Func<Uri, SslClientAuthenticationOptions>?[] LoadBackends(IReadOnlyList<RouteModel?> routes, string baseDirectory, DateTimeOffset now, ConfigErrors errors)
    {
        var result = new Func<Uri, SslClientAuthenticationOptions>?[routes.Count];
        for (var i = 0; i < routes.Count; i++)
        {
            if (routes[i]?.Proxy?.Tls is { } tls)
            {
                result[i] = LoadBackend(tls, $"routes[{i}].proxy.tls", baseDirectory, now, errors);
            }
        }

        return result;
    }

    private static Func<Uri, SslClientAuthenticationOptions>? LoadBackend(ProxyTlsModel tls, string path, string baseDirectory, DateTimeOffset now, ConfigErrors errors)
    {
        if ((tls.ClientCertificate is null) != (tls.ClientKey is null))
        {
            errors.Add(tls.ClientCertificate is null ? $"{path}.clientCertificate" : $"{path}.clientKey", tls.ClientCertificate is null
                ? "is required with clientKey"
                : "is required with clientCertificate");
            return null;
        }

        if (errors.AnyAtOrUnder(path))
        {
            return null;
        }

        var ca = tls.Ca is null ? null : PemCertificates.LoadBundle(tls.Ca, baseDirectory, $"{path}.ca", errors);
        var client = tls.ClientCertificate is null
            ? null
            : PemCertificates.LoadWithKey(tls.ClientCertificate, tls.ClientKey!, baseDirectory, $"{path}.clientCertificate", $"{path}.clientKey", server: false, now, errors);
        if ((tls.Ca is not null && ca is null) || (tls.ClientCertificate is not null && client is null))
        {
            return null;
        }

        return BackendTls.Options(ca, client);
    }
}
