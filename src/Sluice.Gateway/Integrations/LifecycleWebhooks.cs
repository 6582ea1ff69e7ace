using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Polly;
using Polly.Retry;
using Polly.Timeout;
using Sluice.Gateway.Configuration.Model;
using Sluice.Policies;
using Sluice.Proxy;

namespace Sluice.Gateway.Integrations;

/// <summary>The names of the lifecycle events in <c>events.on</c> and in the JSON sent.</summary>
internal static class LifecycleEvents
{
    public const string Connect = "connect";
    public const string Disconnect = "disconnect";
}

/// <summary>
/// A route's <c>events</c>: connects and disconnects POSTed to a service, at least once, without holding up a
/// connection. The hooks only put the event in a bounded queue per route and URL (a target that is down fills its own
/// queue, not another route's); a few workers deliver it, retrying with exponential backoff and jitter for up to a
/// minute. Events that find the queue full, or that are still undelivered after the minute, are dropped, counted
/// (<c>sluice.webhooks.dropped</c>) and logged at most every ten seconds per queue. On shutdown the queues get a
/// few seconds to drain.
/// </summary>
internal sealed partial class LifecycleWebhooks : IDisposable
{
    /// <summary>How long an event is retried before it is given up.</summary>
    public static readonly TimeSpan DeliveryWindow = TimeSpan.FromMinutes(1);

    /// <summary>How long shutdown waits for the queues to empty.</summary>
    public static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(3);

    private const int WorkersPerQueue = 4;
    private static readonly TimeSpan s_dropLogInterval = TimeSpan.FromSeconds(10);
    private static readonly MediaTypeHeaderValue s_json = new("application/json") { CharSet = "utf-8" };

    private readonly ConcurrentDictionary<(string Route, string Url), Queue> _queues = new();
    private readonly IHttpClientFactory _clients;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ResiliencePipeline _retry;

    public LifecycleWebhooks(IHttpClientFactory clients, ILoggerFactory loggerFactory)
    {
        _clients = clients;
        _logger = loggerFactory.CreateLogger("Sluice.Gateway.Webhooks");
        _retry = new ResiliencePipelineBuilder()
            .AddTimeout(DeliveryWindow)
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<HttpRequestException>().Handle<TimeoutRejectedException>().Handle<RetryableAnswerException>()
                    .Handle<OperationCanceledException>(_ => !_stopping.IsCancellationRequested),
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(250),
                MaxDelay = TimeSpan.FromSeconds(5),
            })
            .Build();
        IntegrationMetrics.Track(this);
    }

    /// <summary>Events waiting in every queue, for the queue gauge.</summary>
    public IEnumerable<(string Route, int Count)> Waiting => _queues.Select(q => (q.Key.Route, q.Value.Channel.Reader.Count));

    /// <summary>Adds the route's hooks to a route builder.</summary>
    public void Attach(WebSocketPipelineBuilder builder, string route, EventsModel events)
    {
        var queue = _queues.GetOrAdd((route, events.Url), key => new Queue(this, key.Route, new Uri(key.Url), events.QueueSize));
        var timeout = TimeSpan.FromMilliseconds(events.TimeoutMs);
        if (events.On.Contains(LifecycleEvents.Connect))
        {
            builder.OnConnected(connection => queue.Enqueue(Event(LifecycleEvents.Connect, connection, null), timeout));
        }

        if (events.On.Contains(LifecycleEvents.Disconnect))
        {
            builder.OnClosed((connection, close) => queue.Enqueue(Event(LifecycleEvents.Disconnect, connection, close), timeout));
        }
    }

    /// <summary>Gives the queues <see cref="DrainTimeout"/> to deliver what they hold, then stops them.</summary>
    public void Drain()
    {
        foreach (var queue in _queues.Values)
        {
            queue.Channel.Writer.TryComplete();
        }

        var all = Task.WhenAll(_queues.Values.SelectMany(q => q.Workers));
        if (Task.WaitAny([all], DrainTimeout) == 0)
        {
            return;
        }

        // What is still queued or being retried now will not be delivered: count it before the workers stop.
        var left = _queues.Values.Select(q => (Queue: q, Count: q.Channel.Reader.Count + q.InFlight)).ToList();
        _stopping.Cancel();
        Task.WaitAny([all], TimeSpan.FromSeconds(1));
        foreach (var (queue, count) in left)
        {
            if (count > 0)
            {
                IntegrationMetrics.WebhookDropped(queue.Route, "shutdown", count);
                Log.UndeliveredAtShutdown(_logger, queue.Route, queue.LogUrl, count);
            }
        }
    }

    public void Dispose()
    {
        IntegrationMetrics.Untrack(this);
        _stopping.Cancel();
        _stopping.Dispose();
    }

    private static byte[] Event(string name, WebSocketConnection connection, ConnectionCloseInfo? close)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("event", name);
            json.WriteString("connectionId", connection.Id);
            json.WriteString("route", connection.RoutePattern);
            json.WriteString("subject", connection.Subject);
            json.WriteString("ip", connection.RemoteIpAddress?.ToString());
            if (close is { } info)
            {
                if (info.Status is { } status)
                {
                    json.WriteNumber("closeCode", (int)status);
                }
                else
                {
                    json.WriteNull("closeCode");
                }

                json.WriteString("closeReason", info.Description);
            }

            json.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private async Task DeliverAsync(Queue queue, Pending pending)
    {
        try
        {
            await _retry.ExecuteAsync(
                static async (state, token) =>
                {
                    var (self, queue, pending) = state;
                    var content = new ByteArrayContent(pending.Body);
                    content.Headers.ContentType = s_json;
                    using var request = new HttpRequestMessage(HttpMethod.Post, queue.Url) { Content = content }.WithTimeout(pending.Timeout);
                    using var response = await self._clients.CreateClient(HttpCallouts.ClientName).SendAsync(request, token);
                    var status = (int)response.StatusCode;
                    // 408, 429 and 5xx may succeed later; another 4xx will not, and retrying it for a minute helps no one.
                    if (status is 408 or 429 or >= 500)
                    {
                        throw new RetryableAnswerException(status);
                    }

                    if (status is < 200 or > 299)
                    {
                        Log.Refused(self._logger, queue.Route, queue.LogUrl, status);
                        IntegrationMetrics.WebhookDropped(queue.Route, "refused", 1);
                        return;
                    }

                    IntegrationMetrics.WebhookDelivered(queue.Route);
                },
                (this, queue, pending),
                _stopping.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutRejectedException or RetryableAnswerException)
        {
            IntegrationMetrics.WebhookDropped(queue.Route, "gave_up", 1);
            Log.GaveUp(_logger, queue.Route, queue.LogUrl, DeliveryWindow.TotalSeconds, ex.Message);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Shutdown: counted by Drain.
            throw;
        }
    }

    private sealed record Pending(byte[] Body, TimeSpan Timeout);

    private sealed class RetryableAnswerException(int status) : Exception($"the service answered {status}");

    private sealed class Queue
    {
        private readonly LifecycleWebhooks _owner;
        private long _dropped;
        private long _lastDropLog;
        private int _inFlight;

        public Queue(LifecycleWebhooks owner, string route, Uri url, int capacity)
        {
            _owner = owner;
            Route = route;
            Url = url;
            Channel = System.Threading.Channels.Channel.CreateBounded<Pending>(new BoundedChannelOptions(capacity)
            {
                FullMode = BoundedChannelFullMode.Wait, // TryWrite then fails at once, and the drop is ours to count
                SingleWriter = false,
                SingleReader = false,
            });
            Workers = [.. Enumerable.Range(0, WorkersPerQueue).Select(_ => Task.Run(WorkAsync))];
        }

        public string Route { get; }

        public Uri Url { get; }

        /// <summary>The URL as logged: without its query and user info, which may carry a token.</summary>
        public string LogUrl => WebSocketProxyUrls.WithoutQuery(Url);

        public Channel<Pending> Channel { get; }

        public Task[] Workers { get; }

        public int InFlight => Volatile.Read(ref _inFlight);

        public void Enqueue(byte[] body, TimeSpan timeout)
        {
            if (Channel.Writer.TryWrite(new Pending(body, timeout)))
            {
                return;
            }

            IntegrationMetrics.WebhookDropped(Route, "queue_full", 1);
            Interlocked.Increment(ref _dropped);
            // A target down for an hour drops every event: say so every ten seconds, not per event.
            var now = Environment.TickCount64;
            var last = Interlocked.Read(ref _lastDropLog);
            if ((last == 0 || now - last >= s_dropLogInterval.TotalMilliseconds) && Interlocked.CompareExchange(ref _lastDropLog, now, last) == last)
            {
                Log.QueueFull(_owner._logger, Route, LogUrl, Interlocked.Exchange(ref _dropped, 0), Channel.Reader.Count);
            }
        }

        private async Task WorkAsync()
        {
            try
            {
                await foreach (var pending in Channel.Reader.ReadAllAsync(_owner._stopping.Token))
                {
                    Interlocked.Increment(ref _inFlight);
                    try
                    {
                        await _owner.DeliverAsync(this, pending);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        // Whatever went wrong with this event, the worker goes on with the next one.
                        IntegrationMetrics.WebhookDropped(Route, "gave_up", 1);
                        Log.GaveUp(_owner._logger, Route, LogUrl, 0, ex.Message);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref _inFlight);
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Shutdown.
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(840, LogLevel.Warning, "Webhooks of {Route} to {Url}: the queue is full ({Waiting} waiting); {Dropped} events dropped since the last report")]
        public static partial void QueueFull(ILogger logger, string route, string url, long dropped, int waiting);

        [LoggerMessage(841, LogLevel.Warning, "Webhook of {Route} to {Url} given up after {Seconds} s of retries: {Reason}")]
        public static partial void GaveUp(ILogger logger, string route, string url, double seconds, string reason);

        [LoggerMessage(842, LogLevel.Warning, "Webhook of {Route} to {Url} refused with {Status}; not retried")]
        public static partial void Refused(ILogger logger, string route, string url, int status);

        [LoggerMessage(843, LogLevel.Warning, "Webhooks of {Route} to {Url}: {Count} events undelivered at shutdown")]
        public static partial void UndeliveredAtShutdown(ILogger logger, string route, string url, int count);
    }
}
