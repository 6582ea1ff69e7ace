using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Security.Claims;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features.Authentication;
using Microsoft.AspNetCore.Routing;
using Sluice.Diagnostics;
using Sluice.Protocol;
using Sluice.Topics;

namespace Sluice;

/// <summary>
/// One client's WebSocket connection, hosted by the app or proxied to a backend: who it is, what it has
/// carried, and the operations the app may perform on it from any thread.
/// </summary>
/// <remarks>
/// Request data (<see cref="RouteValues"/>, <see cref="Query"/>, <see cref="RequestHeaders"/>) are those of the
/// HTTP upgrade request and are valid until <see cref="Closed"/> fires.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A connection disposes its resources itself when it ends; apps never own one.")]
public abstract partial class WebSocketConnection
{
    // Both are made when first asked for, which most connections never are (about 140 bytes each connection otherwise
    // holds while idle), and replaced by the shared ended instances when the connection ends.
    private static readonly CancellationTokenSource s_ended = new(TimeSpan.Zero);
    private static readonly TaskCompletionSource s_completed = Completed();
    private CancellationTokenSource? _closed;
    private TaskCompletionSource? _completion;
    private readonly long _connectedTicks;
    private Dictionary<object, object?>? _items;
    private object?[]? _features;
    private HashSet<string>? _topics;
    private TopicOutbox? _outbox;
    private object? _featureSync;

    private long _inboundMessages;
    private long _inboundBytes;
    private long _outboundMessages;
    private long _outboundBytes;
    private long _lastInboundTicks;
    private long _lastOutboundTicks;
    private ClaimsPrincipal? _user;
    private UpgradeHandoff? _handoff;
    private List<IDisposable>? _disposables;
    private UpgradeContext? _upgrade;

    private protected WebSocketConnection(WebSocketRoute route, HttpContext httpContext, UpgradeContext upgrade, string? subProtocol, WebSocketLeg client, WebSocketLeg? backend)
    {
        Route = route;
        _client = client;
        _backend = backend;
        _outboundSink = new LegSink(this, forwardTo: client, replyTo: backend);
        _inboundSink = backend is null ? null! : new LegSink(this, forwardTo: backend, replyTo: client);
        Id = upgrade.ConnectionId;
        _handoff = upgrade.Handoff;
        _upgrade = upgrade;
        // A connection that leaves its request early (UpgradeHandoff) keeps copies: Kestrel clears its route values
        // and headers for the next request.
        RouteValues = _handoff is null ? httpContext.Request.RouteValues : CopyRouteValues(httpContext.Request.RouteValues);
        // Read now, while the request is live (its HttpContext is recycled when the connection ends), but without
        // making ASP.NET Core build a parsed query or an anonymous principal that nothing asked for: an idle
        // connection would hold them for its whole life.
        RequestPath = httpContext.Request.PathBase.Add(httpContext.Request.Path);
        Query = httpContext.Request.QueryString.HasValue ? httpContext.Request.Query : QueryCollection.Empty;
        RequestHeaders = _handoff is null ? httpContext.Request.Headers : new HeaderSnapshot(httpContext.Request.Headers);
        _user = httpContext.Features.Get<IHttpAuthenticationFeature>()?.User;
        RemoteIpAddress = httpContext.Connection.RemoteIpAddress;
        Subject = upgrade.Subject;
        SubProtocol = subProtocol;
        UpgradeData = upgrade.Data;
        if (upgrade.ItemsOrNull is { } items)
        {
            foreach (var (key, value) in items)
            {
                Items[key] = value;
            }
        }

        _connectedTicks = route.Time.GetTimestamp();
        ConnectedAt = route.Time.GetUtcNow();
    }

    /// <summary>Gets an id unique within the process, used by the admin API and in logs.</summary>
    public string Id { get; }

    /// <summary>Gets the route pattern of the endpoint that accepted the connection, e.g. <c>/chat/{room}</c>.</summary>
    public string RoutePattern => Route.Pattern;

    /// <summary>Gets the route values of the upgrade request.</summary>
    public RouteValueDictionary RouteValues { get; }

    /// <summary>Gets the path of the upgrade request (with its path base), e.g. <c>/chat/lobby</c>.</summary>
    public PathString RequestPath { get; }

    /// <summary>Gets the query string values of the upgrade request.</summary>
    public IQueryCollection Query { get; }

    /// <summary>Gets the headers of the upgrade request.</summary>
    /// <remarks>
    /// A read-only copy when the connection leaves its request early (<c>UseWebSocketHandoff</c>, as the gateway does);
    /// otherwise the request's own collection.
    /// </remarks>
    public IHeaderDictionary RequestHeaders { get; }

    /// <summary>Gets the user that ASP.NET Core authentication produced for the upgrade request.</summary>
    public ClaimsPrincipal User => _user ??= new ClaimsPrincipal(new ClaimsIdentity());

    /// <summary>
    /// Gets who the client is, as an upgrade step or policy established it (an API key's subject, a JWT's
    /// <c>sub</c>), or the authenticated user's name; null for an anonymous client.
    /// </summary>
    public string? Subject { get; }

    /// <summary>Gets the client's IP address.</summary>
    public IPAddress? RemoteIpAddress { get; }

    /// <summary>Gets the subprotocol agreed in the handshake, if any.</summary>
    public string? SubProtocol { get; }

    /// <summary>Gets when the connection was accepted.</summary>
    public DateTimeOffset ConnectedAt { get; }

    /// <summary>Gets the value the last upgrade step passed on (<see cref="UpgradeResult.Continue(object?)"/>).</summary>
    public object? UpgradeData { get; internal set; }

    /// <summary>Gets a bag for the app's per-connection values. Not synchronized: guard it if several threads write.</summary>
    public IDictionary<object, object?> Items => _items ??= [];

    /// <summary>Gets a token that fires once the connection has ended.</summary>
    public CancellationToken Closed => (Volatile.Read(ref _closed) ?? Create(ref _closed, static () => new CancellationTokenSource())).Token;

    /// <summary>Gets the number of messages received from the client.</summary>
    public long InboundMessages => Volatile.Read(ref _inboundMessages);

    /// <summary>Gets the payload bytes received from the client.</summary>
    public long InboundBytes => Volatile.Read(ref _inboundBytes);

    /// <summary>Gets the number of messages sent to the client.</summary>
    public long OutboundMessages => Volatile.Read(ref _outboundMessages);

    /// <summary>Gets the payload bytes sent to the client.</summary>
    public long OutboundBytes => Volatile.Read(ref _outboundBytes);

    /// <summary>Gets when the last message from the client arrived, or null if none has.</summary>
    public DateTimeOffset? LastInboundAt => FromTicks(Volatile.Read(ref _lastInboundTicks));

    /// <summary>Gets when the last message to the client was sent, or null if none has been.</summary>
    public DateTimeOffset? LastOutboundAt => FromTicks(Volatile.Read(ref _lastOutboundTicks));

    internal WebSocketRoute Route { get; }

    private static RouteValueDictionary CopyRouteValues(RouteValueDictionary values)
    {
        // An array of exactly the values: the copy constructor would allocate room for four.
        var copy = new KeyValuePair<string, object?>[values.Count];
        var count = 0;
        foreach (var value in values)
        {
            copy[count++] = value;
        }

        return RouteValueDictionary.FromArray(copy);
    }

    internal long LastMessageTicks => Math.Max(Math.Max(Volatile.Read(ref _lastInboundTicks), Volatile.Read(ref _lastOutboundTicks)), _connectedTicks);

    /// <summary>Gets whether the connection has begun closing; messages sent from now on are discarded.</summary>
    public bool IsClosing => _state != ConnectionState.Open;

    /// <summary>
    /// Injects a message into the client leg after the outbound chain: no interceptor sees it. Safe from any thread;
    /// completes when the socket has taken it. Discarded once the connection is closing.
    /// A ping or a pong (<see cref="WebSocketMessage.FromPing"/>) is sent as that control frame.
    /// </summary>
    /// <exception cref="ArgumentException">The message is a close frame: close with <c>CloseAsync</c>.</exception>
    public ValueTask SendToClientAsync(WebSocketMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(message);
        ThrowIfClose(message);
        if (IsClosing || !ClientLeg.Send(message.Type, message.Payload.Span))
        {
            return default;
        }

        CountOutbound(message.Length);
        return FlushClientAsync(cancellationToken);
    }

    /// <summary>A close written as a message would bypass the close handshake.</summary>
    private protected static void ThrowIfClose(WebSocketMessage message)
    {
        if (message.Type == MessageType.Close)
        {
            throw new ArgumentException("A close frame is not sent as a message: call CloseAsync.", nameof(message));
        }
    }

    /// <summary>Sends a text message to the client. See <see cref="SendAsync(WebSocketMessage, CancellationToken)"/>.</summary>
    public ValueTask SendAsync(string text, CancellationToken cancellationToken = default) =>
        SendAsync(WebSocketMessage.FromText(text), cancellationToken);

    /// <summary>
    /// Starts the close handshake with <paramref name="status"/> on every leg of the connection and completes
    /// when the connection has ended (or the close timeout has passed and it was aborted).
    /// </summary>
    public Task CloseAsync(WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = null)
    {
        BeginClose(status, reason, ConnectionCloseInitiator.Server);
        return Completion;
    }

    /// <summary>Subscribes the connection to <paramref name="topic"/>. Returns false if it already was.</summary>
    public bool Subscribe(string topic) => TrySubscribe(topic, int.MaxValue) == SubscribeResult.Subscribed;

    /// <summary>Subscribes unless the connection already holds <paramref name="limit"/> topics (checked under the same lock as the add).</summary>
    internal SubscribeResult TrySubscribe(string topic, int limit, TopicRecovery? recovery = null)
    {
        // Validated before the connection records it: an invalid name must not stay in the connection's set.
        Route.Topics.Validate(topic);
        var topics = LazyInitializer.EnsureInitialized(ref _topics, () => new HashSet<string>(StringComparer.Ordinal));
        lock (topics)
        {
            if (IsClosing)
            {
                return SubscribeResult.Closing;
            }

            if (topics.Contains(topic))
            {
                return SubscribeResult.AlreadySubscribed;
            }

            if (topics.Count >= limit)
            {
                return SubscribeResult.OverLimit;
            }

            topics.Add(topic);
        }

        if (!Route.Topics.Subscribe(this, topic, recovery))
        {
            return SubscribeResult.AlreadySubscribed;
        }

        // A close that raced with this subscribe has already unsubscribed everything else; undo this one too.
        if (IsClosing)
        {
            Unsubscribe(topic);
            return SubscribeResult.Closing;
        }

        return SubscribeResult.Subscribed;
    }

    /// <summary>Unsubscribes the connection from <paramref name="topic"/>. Returns false if it was not subscribed.</summary>
    public bool Unsubscribe(string topic)
    {
        var topics = _topics;
        if (topics is null)
        {
            return false;
        }

        lock (topics)
        {
            if (!topics.Remove(topic))
            {
                return false;
            }
        }

        return Route.Topics.Unsubscribe(this, topic);
    }

    /// <summary>Gets the topics the connection is subscribed to.</summary>
    public IReadOnlyCollection<string> Topics
    {
        get
        {
            var topics = _topics;
            if (topics is null)
            {
                return [];
            }

            lock (topics)
            {
                return [.. topics];
            }
        }
    }

    /// <summary>
    /// Publishes <paramref name="message"/> to the subscribers of <paramref name="topic"/> on every node; this
    /// connection receives it too only if <paramref name="includeSelf"/> is true and it is subscribed.
    /// </summary>
    public ValueTask PublishAsync(string topic, WebSocketMessage message, bool includeSelf = false, CancellationToken cancellationToken = default) =>
        Route.Topics.PublishAsync(topic, message, includeSelf ? null : this, cancellationToken);

    /// <summary>Gets the connection's instance of the feature <typeparamref name="TFeature"/>, created on first use.</summary>
    /// <exception cref="InvalidOperationException">No endpoint or group of this connection registered the feature.</exception>
    public TFeature Feature<TFeature>()
        where TFeature : class
    {
        var slot = FeatureSlots.Of<TFeature>();
        var features = _features;
        if (features is not null && slot < features.Length && features[slot] is TFeature existing)
        {
            return existing;
        }

        return CreateFeature<TFeature>(slot);
    }

    /// <summary>Gets the feature <typeparamref name="TFeature"/> if the connection has already created it.</summary>
    public bool TryGetFeature<TFeature>([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TFeature? feature)
        where TFeature : class
    {
        var slot = FeatureSlots.Of<TFeature>();
        var features = Volatile.Read(ref _features);
        feature = features is not null && slot < features.Length ? features[slot] as TFeature : null;
        return feature is not null;
    }

    /// <summary>Describes the connection for logs: id and route, never payloads or credentials.</summary>
    public override string ToString() => $"{Id} {RoutePattern}";

    /// <summary>Completes when the connection has ended and every hook has run.</summary>
    internal Task Completion =>
        (Volatile.Read(ref _completion) ?? Create(ref _completion, static () => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))).Task;

    private static T Create<T>(ref T? field, Func<T> create)
        where T : class
    {
        var created = create();
        return Interlocked.CompareExchange(ref field, created, null) ?? created;
    }

    private static TaskCompletionSource Completed()
    {
        var completed = new TaskCompletionSource();
        completed.SetResult();
        return completed;
    }

    private ValueTask FlushClientAsync(CancellationToken cancellationToken) => FlushQuietlyAsync(_client, cancellationToken);

    internal void DeliverTopic(TopicFrame frame, bool replay = false)
    {
        if (!IsClosing)
        {
            (_outbox ?? EnsureOutbox()).Enqueue(frame, replay);
        }
    }

    private TopicOutbox EnsureOutbox()
    {
        var outbox = new TopicOutbox(this, Route.Topics);
        return Interlocked.CompareExchange(ref _outbox, outbox, null) ?? outbox;
    }

    private void LeaveAllTopics()
    {
        var topics = _topics;
        if (topics is null)
        {
            return;
        }

        string[] subscribed;
        lock (topics)
        {
            subscribed = [.. topics];
            topics.Clear();
        }

        foreach (var topic in subscribed)
        {
            Route.Topics.Unsubscribe(this, topic);
        }

        _outbox?.Clear();
    }

    internal void CountInbound(int bytes)
    {
        Interlocked.Increment(ref _inboundMessages);
        Interlocked.Add(ref _inboundBytes, bytes);
        Volatile.Write(ref _lastInboundTicks, Route.Time.GetTimestamp());
    }

    internal void CountOutbound(int bytes)
    {
        Interlocked.Increment(ref _outboundMessages);
        Interlocked.Add(ref _outboundBytes, bytes);
        Volatile.Write(ref _lastOutboundTicks, Route.Time.GetTimestamp());
    }

    /// <summary>The connection's <c>sluice.connection</c> activity, when something listens to Sluice's traces.</summary>
    internal Activity? Activity { get; set; }

    /// <summary>Makes the accepted connection known: registry, metrics, log.</summary>
    private void OnAccepted()
    {
        Route.Registry.Add(this);
        Route.RouteMetrics.Add(this);
        Route.Metrics.ConnectionsOpened.Add(1, new KeyValuePair<string, object?>("route", Route.Pattern));
        SluiceLog.ConnectionAccepted(Route.Logger, Id, Route.Pattern, Subject, SubProtocol);
    }

    /// <summary>
    /// The end of every connection, once its sockets are closed: forget it, release its place, fire
    /// <see cref="Closed"/>, run the faulted and closed hooks, dispose its features.
    /// </summary>
    private async Task OnEndedAsync(Exception? fault, ConnectionCloseInfo info)
    {
        LeaveAllTopics();
        Route.Registry.Remove(this);
        Route.RouteMetrics.Remove(this);
        Route.Registry.ReleaseReservation();
        var closed = Interlocked.Exchange(ref _closed, s_ended) is { } made && made != s_ended ? made : null;
        try
        {
            closed?.Cancel();
        }
        catch (AggregateException)
        {
            // A callback registered by app code threw; the connection is closed regardless.
        }

        Route.Metrics.RecordClosed(Route.Pattern, info.Status);
        SluiceTracing.Ended(Activity, info.Status, info.Description);
        SluiceLog.ConnectionClosed(Route.Logger, Id, Route.Pattern, info.Initiator, info.Status, info.Description);
        if (fault is not null)
        {
            SluiceLog.ConnectionFaulted(Route.Logger, Id, Route.Pattern, fault.Message);
            await Route.RunFaultedHooksAsync(this, fault);
        }

        await Route.RunClosedHooksAsync(this, info);

        var features = Interlocked.Exchange(ref _features, null);
        if (features is not null)
        {
            foreach (var feature in features)
            {
                try
                {
                    switch (feature)
                    {
                        case IAsyncDisposable asyncDisposable:
                            await asyncDisposable.DisposeAsync();
                            break;
                        case IDisposable disposable:
                            disposable.Dispose();
                            break;
                    }
                }
                catch (Exception ex)
                {
                    SluiceLog.HookFailed(Route.Logger, ex, "feature dispose", Id, Route.Pattern);
                }
            }
        }

        // The source is not disposed: it has no timer to release, and a reader that took it just before the exchange
        // above may still ask it for its token.
        Interlocked.Exchange(ref _completion, s_completed)?.TrySetResult();
    }

    private TFeature CreateFeature<TFeature>(int slot)
        where TFeature : class
    {
        var factory = Route.Features.Get(slot)
            ?? throw new InvalidOperationException(
                $"No feature of type {typeof(TFeature).Name} is registered for '{RoutePattern}'. Register it with AddFeature<{typeof(TFeature).Name}>() on the endpoint or a group that contains it.");

        // Creation is rare and may run a factory that asks for another feature: a reentrant lock keeps it simple.
        var sync = Volatile.Read(ref _featureSync) ?? Interlocked.CompareExchange(ref _featureSync, new object(), null) ?? _featureSync;
        lock (sync)
        {
            var features = _features;
            if (features is null || slot >= features.Length)
            {
                var larger = new object?[Math.Max(slot + 1, FeatureSlots.Count)];
                features?.CopyTo(larger, 0);
                features = larger;
                Volatile.Write(ref _features, features);
            }

            if (features[slot] is TFeature existing)
            {
                return existing;
            }

            var created = (TFeature)factory(this);
            Volatile.Write(ref features[slot], created);
            return created;
        }
    }

    private DateTimeOffset? FromTicks(long ticks) =>
        ticks == 0 ? null : ConnectedAt + Route.Time.GetElapsedTime(_connectedTicks, ticks);
}

/// <summary>
/// Counts the receive loops running in the process, so that tests can prove that no loop outlives its
/// connection, whatever way the connection ended.
/// </summary>
internal static class ReceiveLoops
{
    private static int s_running;

    public static int Running => Volatile.Read(ref s_running);

    public static void Started() => Interlocked.Increment(ref s_running);

    public static void Stopped() => Interlocked.Decrement(ref s_running);
}

/// <summary>Short, ordered, process-unique connection ids, in the style of Kestrel's connection ids.</summary>
internal static class ConnectionIds
{
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    private static long s_last = DateTime.UtcNow.Ticks;

    public static string Next()
    {
        var id = Interlocked.Increment(ref s_last);
        return string.Create(13, id, static (buffer, value) =>
        {
            for (var i = buffer.Length - 1; i >= 0; i--)
            {
                buffer[i] = Alphabet[(int)(value & 31)];
                value >>= 5;
            }
        });
    }
}
