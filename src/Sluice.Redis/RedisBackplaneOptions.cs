namespace Sluice.Redis;

/// <summary>Settings of the Redis topic backplane (<c>AddRedisBackplane</c>).</summary>
public sealed class RedisBackplaneOptions
{
    /// <summary>
    /// Gets or sets the StackExchange.Redis configuration string, e.g. <c>127.0.0.1:6379</c> or
    /// <c>redis.internal:6380,password=...,ssl=true</c>. Default: <c>127.0.0.1:6379</c>.
    /// </summary>
    public string Configuration { get; set; } = "127.0.0.1:6379";

    /// <summary>
    /// Gets or sets the prefix of every Redis channel and key the backplane uses, so that several Sluice clusters can
    /// share one Redis. Nodes that should see each other's topics use the same prefix. Default: <c>sluice</c>.
    /// </summary>
    public string ChannelPrefix { get; set; } = "sluice";

    /// <summary>Gets or sets how often the node writes its heartbeat into the node registry. Default: 2 seconds.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Gets or sets how long a node stays in the registry after its last heartbeat: a node killed without a word
    /// disappears from the node and connection lists within this time. Default: 6 seconds (three heartbeats).
    /// </summary>
    public TimeSpan NodeTimeout { get; set; } = TimeSpan.FromSeconds(6);

    /// <summary>
    /// Gets or sets how long a request to the other nodes (list, send, close, send to a subject) waits for their
    /// answers, and a cluster rate limit for Redis; later answers are reported missing. Default: 2 seconds.
    /// </summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(2);
}
