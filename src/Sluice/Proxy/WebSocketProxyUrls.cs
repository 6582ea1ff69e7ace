namespace Sluice.Proxy;

/// <summary>How a WebSocket proxy shows its backends' URLs.</summary>
public static class WebSocketProxyUrls
{
    /// <summary>
    /// Returns a backend URL as logs and dashboards should show it: scheme, authority and path, without the query,
    /// because a rewritten query may carry the client's tokens.
    /// </summary>
    /// <param name="backendUri">The backend's URL (<see cref="ProxyConnection.BackendUri"/>).</param>
    public static string WithoutQuery(Uri backendUri)
    {
        ArgumentNullException.ThrowIfNull(backendUri);
        return $"{backendUri.Scheme}://{backendUri.Authority}{backendUri.AbsolutePath}";
    }
}
