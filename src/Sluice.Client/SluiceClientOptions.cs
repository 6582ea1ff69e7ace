using System.Net.WebSockets;

namespace Sluice.Client;

/// <summary>Options of a <see cref="SluiceClient"/>.</summary>
public sealed class SluiceClientOptions
{
    /// <summary>Gets or sets a token or API key sent as the query parameter <see cref="TokenParameter"/>. Null: none.</summary>
    /// <remarks>A service can send a header instead, with <see cref="ConfigureWebSocket"/> (<c>Authorization: Bearer ...</c>).</remarks>
    public string? Token { get; set; }

    /// <summary>Gets or sets the query parameter of <see cref="Token"/>: <c>access_token</c> (the <c>jwt</c> policy) by default, or an <c>api-key</c> policy's <c>query</c>.</summary>
    public string TokenParameter { get; set; } = "access_token";

    /// <summary>Gets or sets a callback that configures each new <see cref="ClientWebSocket"/> (headers, subprotocols, a proxy, certificates).</summary>
    public Action<ClientWebSocketOptions>? ConfigureWebSocket { get; set; }

    /// <summary>Gets or sets whether a lost connection is opened again (default true).</summary>
    public bool Reconnect { get; set; } = true;

    /// <summary>
    /// Gets or sets whether the client reconnects also after a policy close (1008, 4000-4999) or an upgrade refused
    /// with 401 or 403. Default false: the next connection would be refused the same way.
    /// </summary>
    public bool ReconnectOnPolicyClose { get; set; }

    /// <summary>Gets or sets the bound of the first reconnect delay (default 500 ms); each further attempt doubles it.</summary>
    public TimeSpan InitialReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Gets or sets the largest bound of a reconnect delay (default 30 s). Each delay is random between zero and the bound (full jitter).</summary>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how many reconnects in a row are tried before the client closes (default: no limit). A connection that opens resets the count.</summary>
    public int MaxReconnectAttempts { get; set; } = int.MaxValue;

    /// <summary>Gets or sets how long a connection may take to open (default 10 s).</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets how long a subscribe, unsubscribe or presence query waits for its answer (default 10 s).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the largest frame accepted from the server (default 1 MiB); a larger one closes the connection with 1009 and reconnects.</summary>
    public int MaxMessageBytes { get; set; } = 1024 * 1024;

    /// <summary>Gets or sets the clock of reconnect delays and timeouts (default <see cref="TimeProvider.System"/>).</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Gets or sets the random source of the jitter, a number in [0, 1) (default <see cref="Random.Shared"/>).</summary>
    public Func<double> Jitter { get; set; } = Random.Shared.NextDouble;

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(TokenParameter);
        ArgumentOutOfRangeException.ThrowIfLessThan(InitialReconnectDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxReconnectDelay, InitialReconnectDelay);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxReconnectAttempts);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMessageBytes, 1024);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(Jitter);
    }
}
