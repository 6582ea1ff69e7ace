using System.Net.Security;

namespace Sluice;

/// <summary>
/// Configures a proxied WebSocket endpoint (<c>app.MapWebSocketProxy</c>): the interceptors of both directions
/// (inbound: client to backend; outbound: backend to client), upgrade steps, hooks, and how the backend is reached.
/// </summary>
public sealed class WebSocketProxyBuilder : WebSocketPipelineBuilder
{
    internal WebSocketProxyBuilder()
    {
    }

    /// <summary>
    /// Gets or sets how long connecting to the backend may take, TLS and handshake included, before the client
    /// gets HTTP 502. Default: 5 seconds.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Gets the request headers copied from the client's upgrade request to the backend's (for example
    /// <c>Authorization</c>). <c>X-Forwarded-For</c>, <c>X-Forwarded-Proto</c>, <c>X-Forwarded-Host</c>, W3C trace
    /// context and, for an authenticated client, <c>X-Sluice-Subject</c> are always set.
    /// </summary>
    public IList<string> ForwardHeaders { get; } = [];

    /// <summary>
    /// Gets or sets whether permessage-deflate is offered to the backend. Independent of the client leg's
    /// <see cref="WebSocketEndpointOptions.EnableCompression"/>. Default: false.
    /// </summary>
    public bool EnableBackendCompression { get; set; }

    /// <summary>
    /// Gets or sets a callback that supplies TLS options for a <c>wss://</c> backend, called for each connection with
    /// the backend's URL: return a new instance each time. For a private CA, set
    /// <see cref="SslClientAuthenticationOptions.CertificateChainPolicy"/> with
    /// <see cref="System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust"/>; for mutual TLS,
    /// <see cref="SslClientAuthenticationOptions.ClientCertificateContext"/>. <c>TargetHost</c> defaults to the URL's host.
    /// Default: null (the system's trusted roots, no client certificate).
    /// </summary>
    public Func<Uri, SslClientAuthenticationOptions>? BackendTls { get; set; }
}
