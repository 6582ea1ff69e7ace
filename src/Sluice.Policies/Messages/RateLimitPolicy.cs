using System.Collections.Concurrent;
using System.Globalization;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Json.Pointer;
using Sluice.Policies.Json;

namespace Sluice.Policies;

/// <summary>How a rate limit groups messages into budgets.</summary>
public enum MessageRateLimitPartition
{
    /// <summary>One budget per connection.</summary>
    Connection,

    /// <summary>One budget per authenticated subject, shared by all its connections; anonymous clients by IP.</summary>
    Subject,

    /// <summary>One budget per client IP address.</summary>
    Ip,
}

/// <summary>Where a rate limit's budget is counted.</summary>
public enum RateLimitScope
{
    /// <summary>On each node: every node gives the full budget.</summary>
    Node,

    /// <summary>
    /// Once for the whole cluster, in the store of <see cref="IClusterRateLimits"/> (Redis, with <c>AddRedisBackplane</c>):
    /// the budget is shared by every node. While the store cannot answer, each node counts on its own.
    /// </summary>
    Cluster,
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
    public MessageRateLimitPartition PartitionBy { get; set; } = MessageRateLimitPartition.Connection;

    /// <summary>Gets or sets a JSON Pointer whose value also partitions the budget (e.g. <c>/action</c>: a budget per action).</summary>
    public string? Key { get; set; }

    /// <summary>
    /// Gets or sets how many values of <see cref="Key"/> one partition may hold a budget for at once. A message with a
    /// new value beyond it gets <see cref="ActionPolicyOptions.Action"/>; a value is forgotten once its bucket has
    /// refilled. The client writes the values, so without a bound it could create budgets without end. Default: 1000.
    /// </summary>
    public int MaxKeys { get; set; } = DefaultMaxKeys;

    /// <summary>Gets or sets where the budget is counted: on each node (the default) or once for the cluster.</summary>
    public RateLimitScope Scope { get; set; } = RateLimitScope.Node;

    /// <summary>The default of <see cref="MaxKeys"/>.</summary>
    public const int DefaultMaxKeys = 1000;

    /// <inheritdoc />
    public override IEnumerable<PolicyOptionError> Validate()
    {
        if (Permits <= 0)
        {
            yield return new("permits", "must be a positive number of messages");
        }

        if (PerSeconds <= 0 || double.IsNaN(PerSeconds) || PerSeconds > TimeSpan.MaxValue.TotalSeconds)
        {
            yield return new("perSeconds", "must be a positive number of seconds");
        }

        if (Burst is <= 0)
        {
            yield return new("burst", "must be positive");
        }

        if (!Enum.IsDefined(PartitionBy))
        {
            yield return new("partitionBy", "must be connection, subject or ip");
        }

        if (!Enum.IsDefined(Scope))
        {
            yield return new("scope", "must be node or cluster");
        }

        if (Key is not null && !JsonPointers.IsValid(Key))
        {
            yield return new("key", $"'{Key}' is not a JSON Pointer");
        }

        if (MaxKeys <= 0)
        {
            yield return new("maxKeys", "must be a positive number of values");
        }
        else if (Key is null && MaxKeys != DefaultMaxKeys)
        {
            yield return new("maxKeys", "bounds the values of key; without key there is one budget per partition");
        }

        foreach (var error in base.Validate())
        {
            yield return error;
        }
    }
}

/// <summary>
/// <c>rate-limit</c>: a token bucket per connection, subject or IP, and per value of <c>key</c> when set. A message
/// over budget is dropped, answered with 429, or closes the connection with 1008. A bucket holds
/// <see cref="RateLimitPolicyOptions.Burst"/> tokens and refills continuously at <see cref="RateLimitPolicyOptions.Permits"/>
/// per <see cref="RateLimitPolicyOptions.PerSeconds"/>. A partition holds at most
/// <see cref="RateLimitPolicyOptions.MaxKeys"/> values; a budget unused for as long as an empty bucket takes to refill
/// is forgotten (a full bucket is the same as a new one), so memory stays bounded by the clients active in the last
/// refill period.
/// </summary>
/// <remarks>
/// Time comes from the <see cref="TimeProvider"/> given to the constructor, so tests can advance it. This is why the
/// buckets are not System.Threading.RateLimiting's: its limiters read the system clock and take no
/// <see cref="TimeProvider"/>.
/// </remarks>
public sealed class RateLimitPolicy : MessagePolicy, IDisposable
{
    // Values longer than this are kept as their SHA-256: a client must not make the policy hold its long strings.
    private const int MaxKeyLength = 64;

    private readonly RateLimitPolicyOptions _options;
    private readonly TimeProvider _time;
    private readonly IClusterRateLimits? _cluster;
    private readonly string _clusterKey;
    private readonly JsonPointer? _key;
    private readonly string _rejection;
    private readonly string _tooManyKeys;
    private readonly double _tokenLimit;
    private readonly double _tokensPerTick;
    private readonly long _forgetAfterTicks;
    private readonly ConcurrentDictionary<string, Budgets> _partitions = new(StringComparer.Ordinal);
    private readonly ITimer _sweep;
    private long _budgetCount;

    // The partition key of a connection is the same for each of its messages: built once, not per message.
    private readonly ConditionalWeakTable<WebSocketConnection, string> _connectionKeys = [];
    private readonly ConditionalWeakTable<WebSocketConnection, string>.CreateValueCallback _createConnectionKey;

    /// <summary>Creates the policy.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in rejections, logs and metrics.</param>
    /// <param name="timeProvider">The clock the buckets refill by. Default: <see cref="TimeProvider.System"/>.</param>
    public RateLimitPolicy(RateLimitPolicyOptions options, string name = "rate-limit", TimeProvider? timeProvider = null)
        : this(options, name, timeProvider, null)
    {
    }

    /// <summary>Creates the policy, with the cluster's shared budgets for <see cref="RateLimitScope.Cluster"/>.</summary>
    /// <param name="options">The options.</param>
    /// <param name="name">The policy's name, in rejections, logs, metrics and the budgets' keys in the cluster.</param>
    /// <param name="timeProvider">The clock the node's buckets refill by; null for <see cref="TimeProvider.System"/>.</param>
    /// <param name="cluster">
    /// Where cluster budgets are counted; null counts on this node whatever the scope. The node's buckets are used too
    /// while the cluster's store cannot answer.
    /// </param>
    public RateLimitPolicy(RateLimitPolicyOptions options, string name, TimeProvider? timeProvider, IClusterRateLimits? cluster)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        _options = options;
        _time = timeProvider ?? TimeProvider.System;
        _cluster = options.Scope == RateLimitScope.Cluster ? cluster : null;
        _clusterKey = "rate-limit:" + name + ":";
        _key = options.Key is null ? null : JsonPointers.Parse(options.Key, "key");
        _rejection = string.Create(CultureInfo.InvariantCulture, $"rate limit exceeded: {options.Permits} per {options.PerSeconds} s");
        _tooManyKeys = string.Create(CultureInfo.InvariantCulture, $"rate limit exceeded: at most {options.MaxKeys} distinct {options.Key} values at once");
        _createConnectionKey = ConnectionKey;
        _tokenLimit = options.Burst ?? options.Permits;
        _tokensPerTick = options.Permits / (options.PerSeconds * _time.TimestampFrequency);

        // An empty bucket is full again after this long: a budget unused for it can be forgotten without changing anything.
        // Whole periods, as the documented forget time (⌈burst / permits⌉ × perSeconds) has always been.
        var refillSeconds = Math.Min(Math.Ceiling(_tokenLimit / options.Permits) * options.PerSeconds, TimeSpan.FromDays(1).TotalSeconds);
        _forgetAfterTicks = (long)(refillSeconds * _time.TimestampFrequency);
        var sweepEvery = TimeSpan.FromMilliseconds(Math.Clamp(refillSeconds * 1000, 250, 30_000));
        _sweep = _time.CreateTimer(static state => ((RateLimitPolicy)state!).Sweep(), this, sweepEvery, sweepEvery);
        PolicyMetrics.Track(this);
    }

    /// <summary>Gets how many budgets (a partition, or a partition and a <c>key</c> value) the policy holds now.</summary>
    public long BudgetCount => Interlocked.Read(ref _budgetCount);

    /// <summary>True: a streamed message counts once, at its first fragment; if that one is refused the rest is dropped with it.</summary>
    public override bool HandlesFragments => true;

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        if (context.Message.FragmentOffset > 0)
        {
            return next(context);
        }

        var partition = _connectionKeys.GetValue(context.Connection, _createConnectionKey);
        var key = _key is { } pointer ? KeyValue(context, pointer) : string.Empty;
        if (_cluster is not null)
        {
            return ApplyClusterAsync(context, next, partition, key);
        }

        return Apply(context, next, TryAcquire(partition, key));
    }

    private async ValueTask ApplyClusterAsync(MessageContext context, MessageDelegate next, string partition, string key)
    {
        // maxKeys still bounds the values a partition holds on this node, so that a client cannot make Redis hold its strings without end.
        var local = TryAcquire(partition, key);
        if (local == Outcome.TooManyKeys)
        {
            await Apply(context, next, local);
            return;
        }

        var shared = await _cluster!.TryAcquireTokenAsync(_clusterKey + partition + "|" + key, (int)_tokenLimit, _options.Permits,
            TimeSpan.FromSeconds(_options.PerSeconds), context.Connection.Closed);
        var outcome = shared switch
        {
            true => Outcome.Acquired,
            false => Outcome.Rejected,
            null => local, // the store cannot answer: this node's bucket decides
        };
        await Apply(context, next, outcome);
    }

    private ValueTask Apply(MessageContext context, MessageDelegate next, Outcome outcome)
    {
        switch (outcome)
        {
            case Outcome.Acquired:
                return next(context);
            case Outcome.TooManyKeys:
                Reject(context, _options.Action, 429, _tooManyKeys, WebSocketCloseStatus.PolicyViolation);
                return default;
            default:
                Reject(context, _options.Action, 429, _rejection, WebSocketCloseStatus.PolicyViolation);
                return default;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        PolicyMetrics.Untrack(this);
        _sweep.Dispose();
    }

    private static string KeyValue(MessageContext context, JsonPointer key)
    {
        var value = context.TryGetJsonElement(out var root) && JsonPointers.TryRead(root, key, out var found)
            ? found.ValueKind == JsonValueKind.String && JsonText.IsValidUnicode(found) ? found.GetString()! : found.GetRawText()
            : string.Empty;
        return value.Length <= MaxKeyLength ? value : "#" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(value)));
    }

    /// <summary>Takes a token from the bucket of <paramref name="key"/> in <paramref name="partition"/>, creating it (full) if the partition has room.</summary>
    private Outcome TryAcquire(string partition, string key)
    {
        var now = _time.GetTimestamp();
        while (true)
        {
            var budgets = _partitions.GetOrAdd(partition, static _ => new Budgets());
            lock (budgets)
            {
                if (budgets.Removed)
                {
                    continue; // the sweep has just dropped this partition: use the one that replaces it
                }

                ref var bucket = ref CollectionsMarshal.GetValueRefOrNullRef(budgets.Buckets, key);
                if (!Unsafe.IsNullRef(ref bucket))
                {
                    var tokens = Refilled(bucket, now);
                    bucket = new Bucket(tokens >= 1 ? tokens - 1 : tokens, now);
                    return tokens >= 1 ? Outcome.Acquired : Outcome.Rejected;
                }

                // Full: make room from budgets that have refilled, at most once a second (a scan per message would be
                // the attacker's lever).
                if (budgets.Buckets.Count >= _options.MaxKeys && now - budgets.LastForget >= _time.TimestampFrequency)
                {
                    budgets.LastForget = now;
                    Forget(budgets, now);
                }

                if (budgets.Buckets.Count >= _options.MaxKeys)
                {
                    return Outcome.TooManyKeys;
                }

                budgets.Buckets.Add(key, new Bucket(_tokenLimit - 1, now));
                Interlocked.Increment(ref _budgetCount);
                return Outcome.Acquired;
            }
        }
    }

    private double Refilled(Bucket bucket, long now) => Math.Min(_tokenLimit, bucket.Tokens + ((now - bucket.Updated) * _tokensPerTick));

    private void Sweep()
    {
        var now = _time.GetTimestamp();
        foreach (var (partition, budgets) in _partitions)
        {
            lock (budgets)
            {
                Forget(budgets, now);
                if (budgets.Buckets.Count == 0)
                {
                    budgets.Removed = true;
                    _partitions.TryRemove(new KeyValuePair<string, Budgets>(partition, budgets));
                }
            }
        }
    }

    private void Forget(Budgets budgets, long now)
    {
        var before = budgets.Buckets.Count;
        foreach (var (key, bucket) in budgets.Buckets)
        {
            if (now - bucket.Updated >= _forgetAfterTicks)
            {
                budgets.Buckets.Remove(key);
            }
        }

        Interlocked.Add(ref _budgetCount, budgets.Buckets.Count - before);
    }

    private string ConnectionKey(WebSocketConnection connection)
    {
        switch (_options.PartitionBy)
        {
            case MessageRateLimitPartition.Subject when connection.Subject is { } subject:
                return "s:" + subject;
            case MessageRateLimitPartition.Subject or MessageRateLimitPartition.Ip:
                return ClientPartitions.IpKey(connection.RemoteIpAddress);
            default:
                // A connection's budgets are no one else's: they go with it, so that reconnecting cannot pile up
                // partitions of maxKeys values each until the forget time (which may be a day) has passed.
                var key = "c:" + connection.Id;
                connection.Closed.Register(static state =>
                {
                    var (policy, partition) = ((RateLimitPolicy, string))state!;
                    policy.ForgetPartition(partition);
                }, (this, key));
                return key;
        }
    }

    private void ForgetPartition(string partition)
    {
        if (_partitions.TryRemove(partition, out var budgets))
        {
            lock (budgets)
            {
                budgets.Removed = true;
                Interlocked.Add(ref _budgetCount, -budgets.Buckets.Count);
                budgets.Buckets.Clear();
            }
        }
    }

    private enum Outcome
    {
        Acquired,
        Rejected,
        TooManyKeys,
    }

    /// <summary>A token bucket: its tokens when last updated, and when (a <see cref="TimeProvider"/> timestamp).</summary>
    private readonly record struct Bucket(double Tokens, long Updated);

    /// <summary>A partition's budgets: the bucket of each <c>key</c> value (or the partition's one, "").</summary>
    private sealed class Budgets
    {
        public Dictionary<string, Bucket> Buckets { get; } = new(StringComparer.Ordinal);

        public long LastForget { get; set; }

        public bool Removed { get; set; }
    }
}
