using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Sluice.Gateway.Tls;

/// <summary>The TLS options of a route's <c>wss://</c> backend (<c>proxy.tls</c>), for <see cref="WebSocketProxyBuilder.BackendTls"/>.</summary>
internal static class BackendTls
{
    /// <param name="ca">
    /// The CA bundle: when given, the backend's certificate must chain to one of these and the system's store is not
    /// consulted (a private CA is the point; a public CA must not be able to stand in for the backend). The host name
    /// is still checked. Revocation is not: private CAs rarely publish revocation lists.
    /// </param>
    /// <param name="client">The certificate the gateway presents (mutual TLS), or null.</param>
    public static Func<Uri, SslClientAuthenticationOptions> Options(X509Certificate2Collection? ca, LoadedCertificate? client)
    {
        X509ChainPolicy? policy = null;
        if (ca is not null)
        {
            policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(ca);
        }

        // A new options object per connection: the connector fills in TargetHost, and a policy is not safe to share
        // between concurrent chain builds.
        return uri => new SslClientAuthenticationOptions
        {
            TargetHost = uri.IdnHost,
            CertificateChainPolicy = policy?.Clone(),
            ClientCertificateContext = client?.Context,
        };
    }
}
