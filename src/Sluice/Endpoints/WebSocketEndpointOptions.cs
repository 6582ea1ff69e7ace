namespace Sluice;

/// <summary>Limits and behaviours of a WebSocket endpoint, hosted or proxied.</summary>
/// <remarks>
/// Defaults come from <see cref="SluiceOptions.EndpointDefaults"/>; groups and endpoints refine them with
/// <see cref="WebSocketPipelineBuilder.ConfigureOptions"/>. The values are read when a connection is accepted.
/// </remarks>
public sealed class WebSocketEndpointOptions
{
    /// <summary>
    /// Gets or sets the largest message accepted, in bytes, after reassembly of fragments and after
    /// decompression. Larger messages close the connection with 1009. Default: 1 MiB.
    /// </summary>
    public int MaxMessageBytes { get; set; } = 1024 * 1024;

    /// <summary>
    /// Gets or sets how long a connection may go without a data message in either direction before it is
    /// closed with 1001. <see cref="Timeout.InfiniteTimeSpan"/> (the default) disables the timeout.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Gets or sets how often a ping is sent to a peer that has been silent that long, on every leg.
    /// <see cref="TimeSpan.Zero"/> disables keep-alive. Default: 30 seconds.
    /// </summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Gets or sets how long a peer may stay silent, pings unanswered, before it is considered gone.
    /// Null (the default) means two keep-alive intervals.
    /// </summary>
    public TimeSpan? KeepAliveTimeout { get; set; }

    /// <summary>
    /// Gets or sets how long a close handshake may take before the connection is aborted. Default: 5 seconds.
    /// </summary>
    public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Gets or sets how many messages sent with <see cref="WebSocketConnection.SendAsync(WebSocketMessage, CancellationToken)"/>
    /// may be in progress on one connection at once. Default: 64.
    /// </summary>
    public int SendQueueCapacity { get; set; } = 64;

    /// <summary>Gets or sets what a send does when the send queue is full. Default: <see cref="SendQueueFullMode.Wait"/>.</summary>
    public SendQueueFullMode SendQueueFullMode { get; set; } = SendQueueFullMode.Wait;

    /// <summary>
    /// Gets or sets what happens when an interceptor (or a host-mode handler) throws. Default:
    /// <see cref="InterceptorErrorMode.DropMessage"/>: the message is dropped, the error logged, the connection stays.
    /// </summary>
    public InterceptorErrorMode InterceptorErrorMode { get; set; } = InterceptorErrorMode.DropMessage;

    /// <summary>
    /// Gets the subprotocols a hosted endpoint supports, in order of preference. The first one the client also
    /// offers is selected. Proxied endpoints use the backend's choice instead.
    /// </summary>
    public IList<string> SubProtocols { get; } = [];

    /// <summary>
    /// Gets or sets whether permessage-deflate (RFC 7692) is negotiated with clients that offer it.
    /// Default: false. Compressed messages are still limited by <see cref="MaxMessageBytes"/> once inflated.
    /// </summary>
    public bool EnableCompression { get; set; }

    /// <summary>
    /// Gets or sets whether, and above which size, binary messages are streamed fragment by fragment rather than held
    /// whole. Null (the default) holds every message whole, up to <see cref="MaxMessageBytes"/>. A streamed binary
    /// message is limited by <see cref="WebSocketStreamingOptions.MaxBytes"/> instead.
    /// </summary>
    public WebSocketStreamingOptions? Streaming { get; set; }

    internal TimeSpan EffectiveKeepAliveTimeout =>
        KeepAliveTimeout ?? (KeepAliveInterval > TimeSpan.Zero ? KeepAliveInterval * 2 : Timeout.InfiniteTimeSpan);

    internal WebSocketEndpointOptions Clone()
    {
        var clone = new WebSocketEndpointOptions
        {
            MaxMessageBytes = MaxMessageBytes,
            IdleTimeout = IdleTimeout,
            KeepAliveInterval = KeepAliveInterval,
            KeepAliveTimeout = KeepAliveTimeout,
            CloseTimeout = CloseTimeout,
            SendQueueCapacity = SendQueueCapacity,
            SendQueueFullMode = SendQueueFullMode,
            InterceptorErrorMode = InterceptorErrorMode,
            EnableCompression = EnableCompression,
            Streaming = Streaming?.Clone(),
        };
        foreach (var protocol in SubProtocols)
        {
            clone.SubProtocols.Add(protocol);
        }

        return clone;
    }

    internal void Validate(string pattern)
    {
        if (MaxMessageBytes <= 0)
        {
            throw new InvalidOperationException($"{pattern}: MaxMessageBytes must be positive.");
        }

        if (SendQueueCapacity <= 0)
        {
            throw new InvalidOperationException($"{pattern}: SendQueueCapacity must be positive.");
        }

        if (KeepAliveInterval < TimeSpan.Zero || CloseTimeout <= TimeSpan.Zero)
        {
            throw new InvalidOperationException($"{pattern}: KeepAliveInterval must not be negative and CloseTimeout must be positive.");
        }

        Streaming?.Validate(pattern);
    }
}

/// <summary>What <see cref="WebSocketConnection.SendAsync(WebSocketMessage, CancellationToken)"/> does when the send queue is full.</summary>
public enum SendQueueFullMode
{
    /// <summary>The send waits until there is room: the sender is slowed to the client's pace.</summary>
    Wait,

    /// <summary>The new message is discarded and counted; the send completes at once.</summary>
    DropNewest,

    /// <summary>The connection is closed with 1008 (policy violation): a client that cannot keep up is let go.</summary>
    Close,
}

/// <summary>What happens when an interceptor or handler throws.</summary>
public enum InterceptorErrorMode
{
    /// <summary>The message is dropped and the error logged; the connection stays open.</summary>
    DropMessage,

    /// <summary>The connection is closed with 1011 (internal error).</summary>
    CloseConnection,
}

/// <summary>Application-wide Sluice settings, configured with <c>services.AddSluice(options => ...)</c>.</summary>
public sealed class SluiceOptions
{
    /// <summary>Gets the defaults every endpoint starts from.</summary>
    public WebSocketEndpointOptions EndpointDefaults { get; } = new();

    /// <summary>
    /// Gets or sets how many WebSocket connections the process accepts at once, across every endpoint.
    /// Upgrades beyond it get HTTP 503 with <c>Retry-After</c>, so that the process never runs out of file
    /// descriptors and takes every connection down with it. Null (the default) derives it from the process's
    /// open-file limit: what remains after a reserve for everything else and a fifth for connections that have not
    /// upgraded, halved since a proxied connection holds two sockets (unless <see cref="HostedConnectionsOnly"/>). A larger value is lowered to that, with a warning
    /// (event 110). Kestrel's own connection limits are derived from the same budget unless the app sets them.
    /// </summary>
    public int? MaxConnections { get; set; }

    /// <summary>
    /// Gets or sets whether the app hosts every WebSocket itself and proxies none (no <c>MapWebSocketProxy</c>). A
    /// hosted connection holds one socket where a proxied one holds two, so the default <see cref="MaxConnections"/>
    /// is then about twice as large for the same open-file limit. <c>MapWebSocketProxy</c> throws when it is set.
    /// Default: false.
    /// </summary>
    public bool HostedConnectionsOnly { get; set; }

    /// <summary>
    /// Gets or sets this node's id in a cluster (<see cref="IWebSocketCluster"/>): in the connection lists of the admin
    /// API and in the Redis keys of the node registry. Default: the host's name and six random hex digits, new at each
    /// start. Give each node a stable, unique id where operators should recognise it across restarts.
    /// </summary>
    public string NodeId { get; set; } = NodeIds.Generate();

    /// <summary>Features every connection of the app can create; see <c>AddConnectionFeature</c>.</summary>
    internal List<(int Slot, Func<WebSocketConnection, object> Factory)> Features { get; } = [];

}
