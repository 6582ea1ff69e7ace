using System.Globalization;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.RateLimiting;
using Json.Pointer;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>How a rate limit groups messages into budgets.</summary>
public enum RateLimitPartition
{
    /// <summary>One budget per connection.</summary>
    Connection,

    /// <summary>One budget per authenticated subject, shared by all its connections; anonymous clients by IP.</summary>
    Subject,

    /// <summary>One budget per client IP address.</summary>
    Ip,
}

/// <summary>Options of <see cref="RateLimitPolicy"/> (<c>rate-limit</c>).</summary>
public sealed class RateLimitPolicyOptions : ActionPolicyOptions
{
    /// <summary>Gets or sets how many messages are allowed per <see cref="PerSeconds"/>.</summary>
    public int Permits { get; set; }

    /// <summary>Gets or sets the period, in seconds, over which <see cref="Permits"/> are replenished. Default: 1.</summary>
    public double PerSeconds { get; set; } = 1;

    /// <summary>Gets or sets how many messages may be sent at once after a quiet spell (the bucket size). Default: <see cref="Permits"/>.</summary>
    public int? Burst { get; set; }

    /// <summary>Gets or sets how budgets are partitioned. Default: per connection.</summary>
    public RateLimitPartition PartitionBy { get; set; } = RateLimitPartition.Connection;

    /// <summary>Gets or sets a JSON Pointer whose value also partitions the budget (e.g. <c>/action</c>: a budget per action).</summary>
    public string? Key { get; set; }

    /// <inheritdoc />
    public override IEnumerable<string> Validate()
    {
        if (Permits <= 0)
        {
            yield return "permits: must be a positive number of messages";
        }

        if (PerSeconds <= 0 || double.IsNaN(PerSeconds) || PerSeconds > TimeSpan.MaxValue.TotalSeconds)
        {
            yield return "perSeconds: must be a positive number of seconds";
        }

        if (Burst is <= 0)
        {
            yield return "burst: must be positive";
        }

        if (!Enum.IsDefined(PartitionBy))
        {
            yield return "partitionBy: must be connection, subject or ip";
        }

        if (Key is not null && !JsonPointers.IsValid(Key))
        {
            yield return $"key: '{Key}' is not a JSON Pointer";
        }

        foreach (var error in base.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>rate-limit</c>: a token bucket per connection, subject or IP (System.Threading.RateLimiting). A message over
/// budget is dropped, answered with 429, or closes the connection with 1008. Budgets of clients that have left
/// are released once their buckets are full again, so memory stays bounded.
/// </summary>
public sealed class RateLimitPolicy : MessagePolicy, IDisposable
{
    private readonly RateLimitPolicyOptions _options;
    private readonly PartitionedRateLimiter<MessageContext> _limiter;
    private readonly JsonPointer? _key;
    private readonly string _rejection;

    // The partition key of a connection is the same for each of its messages: built once, not per message.
    private readonly ConditionalWeakTable<WebSocketConnection, string> _connectionKeys = [];
    private readonly ConditionalWeakTable<WebSocketConnection, string>.CreateValueCallback _createConnectionKey;

    /// <summary>Creates the policy.</summary>
    public RateLimitPolicy(RateLimitPolicyOptions options, string name = "rate-limit")
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _options = options;
        _key = options.Key is null ? null : JsonPointers.Parse(options.Key, "key");
        _rejection = string.Create(CultureInfo.InvariantCulture, $"rate limit exceeded: {options.Permits} per {options.PerSeconds} s");
        _createConnectionKey = ConnectionKey;
        var limiterOptions = new TokenBucketRateLimiterOptions
        {
            TokenLimit = options.Burst ?? options.Permits,
            TokensPerPeriod = options.Permits,
            ReplenishmentPeriod = TimeSpan.FromSeconds(options.PerSeconds),
            QueueLimit = 0,
            AutoReplenishment = true,
        };
        _limiter = PartitionedRateLimiter.Create<MessageContext, string>(context =>
            System.Threading.RateLimiting.RateLimitPartition.GetTokenBucketLimiter(PartitionKey(context), _ => limiterOptions));
    }

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        using var lease = _limiter.AttemptAcquire(context);
        if (lease.IsAcquired)
        {
            return next(context);
        }

        Reject(context, _options.Action, 429, _rejection, WebSocketCloseStatus.PolicyViolation);
        return default;
    }

    /// <inheritdoc />
    public void Dispose() => _limiter.Dispose();

    private string ConnectionKey(WebSocketConnection connection) => _options.PartitionBy switch
    {
        RateLimitPartition.Subject when connection.Subject is { } subject => "s:" + subject,
        RateLimitPartition.Subject or RateLimitPartition.Ip => "i:" + connection.RemoteIpAddress,
        _ => "c:" + connection.Id,
    };

    private string PartitionKey(MessageContext context)
    {
        var partition = _connectionKeys.GetValue(context.Connection, _createConnectionKey);

        if (_key is { } key)
        {
            var value = context.TryGetJsonElement(out var root) && JsonPointers.TryRead(root, key, out var found)
                ? found.ValueKind == JsonValueKind.String ? found.GetString() : found.GetRawText()
                : string.Empty;
            partition += "|" + value;
        }

        return partition;
    }
}
