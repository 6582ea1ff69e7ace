using System.Collections.Concurrent;
using System.Globalization;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
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

    /// <summary>
    /// Gets or sets how many values of <see cref="Key"/> one partition may hold a budget for at once. A message with a
    /// new value beyond it gets <see cref="ActionPolicyOptions.Action"/>; a value is forgotten once its bucket has
    /// refilled. The client writes the values, so without a bound it could create budgets without end. Default: 1000.
    /// </summary>
    public int MaxKeys { get; set; } = DefaultMaxKeys;

    /// <summary>The default of <see cref="MaxKeys"/>.</summary>
    public const int DefaultMaxKeys = 1000;

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

        if (MaxKeys <= 0)
        {
            yield return "maxKeys: must be a positive number of values";
        }
        else if (Key is null && MaxKeys != DefaultMaxKeys)
        {
            yield return "maxKeys: bounds the values of key; without key there is one budget per partition";
        }

        foreach (var error in base.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>rate-limit</c>: a token bucket per connection, subject or IP, and per value of <c>key</c> when set
/// (System.Threading.RateLimiting). A message over budget is dropped, answered with 429, or closes the connection
/// with 1008. A partition holds at most <see cref="RateLimitPolicyOptions.MaxKeys"/> values; a budget is forgotten
/// once its bucket has refilled (a full bucket is the same as a new one), so memory stays bounded by the clients
/// active in the last refill period.
/// </summary>
public sealed class RateLimitPolicy : MessagePolicy, IDisposable
{
    // Values longer than this are kept as their SHA-256: a client must not make the policy hold its long strings.
    private const int MaxKeyLength = 64;

    private readonly RateLimitPolicyOptions _options;
    private readonly PartitionedRateLimiter<string> _limiter;
    private readonly JsonPointer? _key;
    private readonly string _rejection;
    private readonly string _tooManyKeys;
    private readonly long _forgetAfterMs;
    private readonly ConcurrentDictionary<string, Budgets> _partitions = new(StringComparer.Ordinal);
    private readonly Timer _sweep;
    private long _budgetCount;

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
        _tooManyKeys = string.Create(CultureInfo.InvariantCulture, $"rate limit exceeded: at most {options.MaxKeys} distinct {options.Key} values at once");
        _createConnectionKey = ConnectionKey;
        var tokenLimit = options.Burst ?? options.Permits;
        var limiterOptions = new TokenBucketRateLimiterOptions
        {
            TokenLimit = tokenLimit,
            TokensPerPeriod = options.Permits,
            ReplenishmentPeriod = TimeSpan.FromSeconds(options.PerSeconds),
            QueueLimit = 0,
            AutoReplenishment = true,
        };
        _limiter = PartitionedRateLimiter.Create<string, string>(key =>
            System.Threading.RateLimiting.RateLimitPartition.GetTokenBucketLimiter(key, _ => limiterOptions));

        // An empty bucket is full again after this long: a budget unused for it can be forgotten without changing anything.
        _forgetAfterMs = (long)Math.Min(Math.Ceiling((double)tokenLimit / options.Permits) * options.PerSeconds * 1000, TimeSpan.FromDays(1).TotalMilliseconds);
        var sweepEvery = TimeSpan.FromMilliseconds(Math.Clamp(_forgetAfterMs, 250, 30_000));
        _sweep = new Timer(static state => ((RateLimitPolicy)state!).Sweep(), this, sweepEvery, sweepEvery);
        PolicyMetrics.Track(this);
    }

    /// <summary>Gets how many budgets (a partition, or a partition and a <c>key</c> value) the policy holds now.</summary>
    public long BudgetCount => Interlocked.Read(ref _budgetCount);

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        var partition = _connectionKeys.GetValue(context.Connection, _createConnectionKey);
        var key = _key is { } pointer ? KeyValue(context, pointer) : string.Empty;
        if (!Admit(partition, key))
        {
            Reject(context, _options.Action, 429, _tooManyKeys, WebSocketCloseStatus.PolicyViolation);
            return default;
        }

        using var lease = _limiter.AttemptAcquire(key.Length == 0 ? partition : partition + "|" + key);
        if (lease.IsAcquired)
        {
            return next(context);
        }

        Reject(context, _options.Action, 429, _rejection, WebSocketCloseStatus.PolicyViolation);
        return default;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        PolicyMetrics.Untrack(this);
        _sweep.Dispose();
        _limiter.Dispose();
    }

    private static string KeyValue(MessageContext context, JsonPointer key)
    {
        var value = context.TryGetJsonElement(out var root) && JsonPointers.TryRead(root, key, out var found)
            ? found.ValueKind == JsonValueKind.String && JsonText.IsValidUnicode(found) ? found.GetString()! : found.GetRawText()
            : string.Empty;
        return value.Length <= MaxKeyLength ? value : "#" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
    }

    /// <summary>Records that <paramref name="key"/> of <paramref name="partition"/> was used; false for a new key the partition has no room for.</summary>
    private bool Admit(string partition, string key)
    {
        var now = Environment.TickCount64;
        while (true)
        {
            var budgets = _partitions.GetOrAdd(partition, static _ => new Budgets());
            lock (budgets)
            {
                if (budgets.Removed)
                {
                    continue; // the sweep has just dropped this partition: use the one that replaces it
                }

                ref var lastUsed = ref CollectionsMarshal.GetValueRefOrNullRef(budgets.LastUsed, key);
                if (!Unsafe.IsNullRef(ref lastUsed))
                {
                    lastUsed = now;
                    return true;
                }

                // Full: make room from budgets that have refilled, at most once a second (a scan per message would be
                // the attacker's lever).
                if (budgets.LastUsed.Count >= _options.MaxKeys && now - budgets.LastForget >= 1000)
                {
                    budgets.LastForget = now;
                    Forget(budgets, now);
                }

                if (budgets.LastUsed.Count >= _options.MaxKeys)
                {
                    return false;
                }

                budgets.LastUsed.Add(key, now);
                Interlocked.Increment(ref _budgetCount);
                return true;
            }
        }
    }

    private void Sweep()
    {
        var now = Environment.TickCount64;
        foreach (var (partition, budgets) in _partitions)
        {
            lock (budgets)
            {
                Forget(budgets, now);
                if (budgets.LastUsed.Count == 0)
                {
                    budgets.Removed = true;
                    _partitions.TryRemove(new KeyValuePair<string, Budgets>(partition, budgets));
                }
            }
        }
    }

    private void Forget(Budgets budgets, long now)
    {
        var before = budgets.LastUsed.Count;
        foreach (var (key, lastUsed) in budgets.LastUsed)
        {
            if (now - lastUsed >= _forgetAfterMs)
            {
                budgets.LastUsed.Remove(key);
            }
        }

        Interlocked.Add(ref _budgetCount, budgets.LastUsed.Count - before);
    }

    private string ConnectionKey(WebSocketConnection connection) => _options.PartitionBy switch
    {
        RateLimitPartition.Subject when connection.Subject is { } subject => "s:" + subject,
        RateLimitPartition.Subject or RateLimitPartition.Ip => "i:" + connection.RemoteIpAddress,
        _ => "c:" + connection.Id,
    };

    /// <summary>A partition's budgets: when each <c>key</c> value (or the partition's one, "") was last used.</summary>
    private sealed class Budgets
    {
        public Dictionary<string, long> LastUsed { get; } = new(StringComparer.Ordinal);

        public long LastForget { get; set; }

        public bool Removed { get; set; }
    }
}
