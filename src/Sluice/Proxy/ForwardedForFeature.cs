namespace Sluice.Proxy;

/// <summary>
/// The <c>X-Forwarded-For</c> chain a WebSocket proxy sends to its backend, when something in front of the endpoint
/// validated it: set it on <c>HttpContext.Features</c> (the Sluice gateway does so for its trusted proxies). Without
/// it the proxy sends the client's address alone (<c>HttpContext.Connection.RemoteIpAddress</c>): the request's own
/// <c>X-Forwarded-For</c> is written by the client, or by proxies nobody vouched for, and is never passed on.
/// </summary>
/// <param name="chain">The addresses, client first, then each trusted proxy up to the one this server's socket saw, comma-separated.</param>
public sealed class ForwardedForFeature(string chain)
{
    /// <summary>Gets the chain, client first, comma-separated.</summary>
    public string Chain { get; } = chain ?? throw new ArgumentNullException(nameof(chain));
}
