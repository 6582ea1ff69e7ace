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
}
