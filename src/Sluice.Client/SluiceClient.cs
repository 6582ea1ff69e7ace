using System.Buffers;
using System.Net;
using System.Net.WebSockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;

namespace Sluice.Client;

/// <summary>
/// A client of the Sluice gateway's pub/sub protocol (<c>{"op":"subscribe"|"unsubscribe"|"publish"|"presence"}</c>)
/// that keeps its connection: a lost connection is opened again after a random delay that doubles with each failed
/// attempt (exponential backoff with full jitter), every topic is subscribed again, and on a route with history the
/// client asks for what it missed (<c>since</c> its last offset and epoch).
/// </summary>
/// <remarks>
/// Events are raised on the client's receive loop, one at a time: a handler should return quickly. A handler that
/// throws is reported through <see cref="Error"/> and does not stop the client.
/// </remarks>
public sealed class SluiceClient : IAsyncDisposable
{
    private const int AbnormalClosure = 1006;

    private readonly Uri _uri;
    private readonly SluiceClientOptions _options;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TopicState> _topics = new(StringComparer.Ordinal);
    private readonly List<Pending> _pending = [];
    private readonly List<Channel<SluiceMessage>> _readers = [];
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _firstConnect = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ClientWebSocket? _socket;
    private Task? _loop;
    private SluiceClientState _state;

    /// <summary>Initializes a new client of the pub/sub route at <paramref name="uri"/>; nothing is opened before <see cref="ConnectAsync"/>.</summary>
    /// <param name="uri">The route, <c>ws://</c> or <c>wss://</c>.</param>
    /// <param name="options">The options, or null for the defaults.</param>
    public SluiceClient(Uri uri, SluiceClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (!uri.IsAbsoluteUri || uri.Scheme is not ("ws" or "wss"))
        {
            throw new ArgumentException($"'{uri}' is not a ws:// or wss:// URI", nameof(uri));
        }

        _options = options ?? new SluiceClientOptions();
        _options.Validate();
        _uri = uri;
        // Observed here: a caller that never awaits ConnectAsync learns of a failure through the events instead.
        _firstConnect.Task.ContinueWith(t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Raised when <see cref="State"/> changes.</summary>
    public event EventHandler<SluiceStateChange>? StateChanged;

    /// <summary>Raised for each message of a subscribed topic.</summary>
    public event EventHandler<SluiceMessage>? MessageReceived;

    /// <summary>Raised when the gateway confirms a subscription, also after each reconnect (with <see cref="SluiceSubscription.Recovered"/>).</summary>
    public event EventHandler<SluiceSubscription>? Subscribed;

    /// <summary>Raised when a subscriber joins or leaves a subscribed topic (routes with <c>presence.joinLeave</c>).</summary>
    public event EventHandler<SluicePresenceChange>? PresenceChanged;

    /// <summary>Raised for errors nobody awaits: a refused publish or resubscribe, a frame that is not the protocol, a failed connect.</summary>
    public event EventHandler<SluiceException>? Error;

    /// <summary>Gets the connection's state.</summary>
    public SluiceClientState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>Gets the topics the client keeps subscribed (again after each reconnect).</summary>
    public IReadOnlyCollection<string> Topics
    {
        get
        {
            lock (_lock)
            {
                return [.. _topics.Keys];
            }
        }
    }

    /// <summary>Gets the last position seen on a topic, or null when the route keeps no history (or nothing was seen).</summary>
    /// <param name="topic">The topic.</param>
    /// <returns>The offset and epoch of the last message, or of the subscription's start.</returns>
    public SluicePosition? GetPosition(string topic)
    {
        lock (_lock)
        {
            return _topics.TryGetValue(topic, out var entry) ? entry.Position : null;
        }
    }

    /// <summary>Opens the connection and keeps it open. Completes once connected; fails if the client closes for good first.</summary>
    /// <param name="cancellationToken">Stops waiting (the client goes on connecting).</param>
    /// <returns>A task that completes when the first connection is open.</returns>
    public Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_state == SluiceClientState.Closed && _loop is null, this);

            _loop ??= Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
        }

        return _firstConnect.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Subscribes to a topic, now and after every reconnect. Completes with the gateway's answer; throws a
    /// <see cref="SluiceException"/> with its status when the gateway refuses (403, 429, 400), and then forgets the topic.
    /// Called before the connection is open, it completes once the connection is open and the topic is subscribed.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The subscription.</returns>
    public async Task<SluiceSubscription> SubscribeAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        TopicState entry;
        TaskCompletionSource<SluiceSubscription>? waiter = null;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_state == SluiceClientState.Closed, this);
            if (!_topics.TryGetValue(topic, out entry!))
            {
                entry = new TopicState();
                _topics[topic] = entry;
            }
            else if (entry.Acknowledged)
            {
                return new SluiceSubscription(topic, entry.Recovered);
            }

            if (_state != SluiceClientState.Connected)
            {
                // Sent with every other topic once the connection opens.
                waiter = new TaskCompletionSource<SluiceSubscription>(TaskCreationOptions.RunContinuationsAsynchronously);
                entry.Waiters.Add(waiter);
            }
        }

        if (waiter is not null)
        {
            return await waiter.Task.WaitAsync(cancellationToken);
        }

        try
        {
            var answer = await RequestAsync("subscribe", topic, null, "subscribed", cancellationToken);
            return new SluiceSubscription(topic, Recovered(answer));
        }
        catch (SluiceException ex) when (ex.Status is not null)
        {
            Forget(topic, entry, ex);
            throw;
        }
    }

    /// <summary>Stops a subscription; completes when the gateway has answered (at once when not connected).</summary>
    /// <param name="topic">The topic.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>A task that completes when unsubscribed.</returns>
    public async Task UnsubscribeAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        bool connected;
        lock (_lock)
        {
            if (!_topics.Remove(topic))
            {
                return;
            }

            connected = _state == SluiceClientState.Connected;
        }

        if (connected)
        {
            await RequestAsync("unsubscribe", topic, null, "unsubscribed", cancellationToken);
        }
    }

    /// <summary>
    /// Publishes a JSON value to every other subscriber of the topic. The protocol does not acknowledge a publish: a
    /// refusal arrives through <see cref="Error"/>. Throws when not connected: nothing is queued to be sent late.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="data">The value (null is JSON null).</param>
    /// <param name="cancellationToken">Cancels the send.</param>
    /// <returns>A task that completes when the frame is sent.</returns>
    public Task PublishAsync(string topic, JsonNode? data, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        return SendAsync(Frame("publish", topic, writer =>
        {
            writer.WritePropertyName("data");
            if (data is null)
            {
                writer.WriteNullValue();
            }
            else
            {
                data.WriteTo(writer);
            }
        }), new Pending("publish", topic, null, null), cancellationToken);
    }

    /// <summary>Publishes a value serialized with <paramref name="typeInfo"/> (source-generated, so trimming and native AOT keep working).</summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="topic">The topic.</param>
    /// <param name="data">The value.</param>
    /// <param name="typeInfo">Its JSON contract.</param>
    /// <param name="cancellationToken">Cancels the send.</param>
    /// <returns>A task that completes when the frame is sent.</returns>
    public Task PublishAsync<T>(string topic, T data, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        ArgumentNullException.ThrowIfNull(typeInfo);
        return SendAsync(Frame("publish", topic, writer =>
        {
            writer.WritePropertyName("data");
            JsonSerializer.Serialize(writer, data, typeInfo);
        }), new Pending("publish", topic, null, null), cancellationToken);
    }

    /// <summary>Asks who is subscribed to a topic, on every node (routes with <c>presence</c>).</summary>
    /// <param name="topic">The topic.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The count and the distinct subjects.</returns>
    public async Task<SluicePresence> GetPresenceAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(topic);
        var answer = await RequestAsync("presence", topic, null, "presence", cancellationToken);
        var count = answer.TryGetProperty("count", out var c) && c.TryGetInt32(out var n) ? n : 0;
        List<string> subjects = [];
        if (answer.TryGetProperty("subjects", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            subjects.AddRange(list.EnumerateArray().Where(s => s.ValueKind == JsonValueKind.String).Select(s => s.GetString()!));
        }

        return new SluicePresence(count, subjects);
    }

    /// <summary>
    /// Reads the messages of every subscribed topic as they arrive, until <paramref name="cancellationToken"/> or the
    /// client closes. Messages are buffered for each reader from the moment it starts: read promptly.
    /// </summary>
    /// <param name="cancellationToken">Stops reading.</param>
    /// <returns>The messages.</returns>
    public async IAsyncEnumerable<SluiceMessage> ReadMessagesAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var channel = Channel.CreateUnbounded<SluiceMessage>(new UnboundedChannelOptions { SingleReader = true });
        lock (_lock)
        {
            if (_state == SluiceClientState.Closed)
            {
                yield break;
            }

            _readers.Add(channel);
        }

        try
        {
            await foreach (var message in channel.Reader.ReadAllAsync(cancellationToken))
            {
                yield return message;
            }
        }
        finally
        {
            lock (_lock)
            {
                _readers.Remove(channel);
            }
        }
    }

    /// <summary>Closes the connection (1000) for good: no reconnect.</summary>
    /// <returns>A task that completes when the client has stopped.</returns>
    public async Task CloseAsync()
    {
        ClientWebSocket? socket;
        Task? loop;
        lock (_lock)
        {
            if (_state == SluiceClientState.Closed)
            {
                return;
            }

            socket = _socket;
            loop = _loop;
        }

        if (socket is not null && await _sendLock.WaitAsync(TimeSpan.FromSeconds(2)))
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _options.TimeProvider);
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "closed by the client", timeout.Token);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
            {
                // Already gone: nothing to say goodbye to.
            }
            finally
            {
                _sendLock.Release();
            }
        }

        await _stopping.CancelAsync();
        if (loop is not null)
        {
            await loop.WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        Finish(new SluiceStateChange(SluiceClientState.Closed, WebSocketCloseStatus.NormalClosure, "closed by the client"));
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await CloseAsync();
        _stopping.Dispose();
        _sendLock.Dispose();
    }

    /// <summary>The wait before reconnect attempt <paramref name="attempt"/> (0-based): random up to an exponential, capped bound.</summary>
    internal TimeSpan NextDelay(int attempt)
    {
        var bound = Math.Min(_options.MaxReconnectDelay.Ticks, _options.InitialReconnectDelay.Ticks * Math.Pow(2, Math.Min(attempt, 30)));
        return TimeSpan.FromTicks((long)(bound * Math.Clamp(_options.Jitter(), 0, 1)));
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        var attempt = 0;
        while (!stopping.IsCancellationRequested)
        {
            SetState(new SluiceStateChange(SluiceClientState.Connecting, Attempt: attempt));
            var (socket, refused, status, description) = await OpenAsync(stopping);
            if (socket is not null)
            {
                attempt = 0;
                List<(string Topic, TopicState Entry, SluicePosition? Since)> topics;
                lock (_lock)
                {
                    // The topics to resubscribe are taken as the state turns Connected, in one step: a subscribe from
                    // now on is sent by SubscribeAsync itself, so no topic is sent twice.
                    _socket = socket;
                    _state = SluiceClientState.Connected;
                    topics = [.. _topics.Select(t => (t.Key, t.Value, t.Value.Position))];
                }

                Raise(StateChanged, new SluiceStateChange(SluiceClientState.Connected));
                _firstConnect.TrySetResult();
                foreach (var (topic, entry, since) in topics)
                {
                    _ = ResubscribeAsync(topic, entry, since, stopping);
                }

                (status, description) = await ReceiveAsync(socket, stopping);
                lock (_lock)
                {
                    _socket = null;
                    foreach (var entry in _topics.Values)
                    {
                        entry.Acknowledged = false;
                    }
                }

                socket.Dispose();
            }

            FailPending(new SluiceException($"the connection closed ({(int)status}{(description is null ? "" : ": " + description)})"));
            if (stopping.IsCancellationRequested)
            {
                return;
            }

            SetState(new SluiceStateChange(SluiceClientState.Disconnected, status, description, attempt));
            if (!ShouldReconnect(status, refused) || attempt >= _options.MaxReconnectAttempts)
            {
                Finish(new SluiceStateChange(SluiceClientState.Closed, status, description, attempt));
                return;
            }

            var delay = NextDelay(attempt);
            attempt++;
            SetState(new SluiceStateChange(SluiceClientState.Reconnecting, status, description, attempt, delay));
            try
            {
                await Task.Delay(delay, _options.TimeProvider, stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private bool ShouldReconnect(WebSocketCloseStatus status, bool refused)
    {
        if (!_options.Reconnect)
        {
            return false;
        }

        // A policy said no: the next connection would be refused or closed the same way, unless the app knows better.
        var code = (int)status;
        if (refused || code == (int)WebSocketCloseStatus.PolicyViolation || code is >= 4000 and <= 4999)
        {
            return _options.ReconnectOnPolicyClose;
        }

        // The client sent what the server cannot take, or the server sent what the client cannot take: a new
        // connection would end the same way. Everything else (1000, 1001, 1006, 1011, 1012, 1013...) is worth a try.
        return code is not (1002 or 1003 or 1007 or 1009 or 1010);
    }

    private async Task<(ClientWebSocket? Socket, bool Refused, WebSocketCloseStatus Status, string? Description)> OpenAsync(CancellationToken stopping)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        _options.ConfigureWebSocket?.Invoke(socket.Options);
        using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
        try
        {
            await socket.ConnectAsync(ConnectUri(), linked.Token);
            return (socket, false, default, null);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or HttpRequestException)
        {
            var code = socket.HttpStatusCode;
            socket.Dispose();
            var description = code != 0 ? $"the upgrade was answered {(int)code}"
                : timeout.IsCancellationRequested ? $"no connection within {_options.ConnectTimeout.TotalSeconds:0.#} s"
                : ex.Message;
            if (!stopping.IsCancellationRequested)
            {
                ReportError(new SluiceException($"cannot connect to {_uri.GetLeftPart(UriPartial.Path)}: {description}", ex));
            }

            return (null, code is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden, (WebSocketCloseStatus)AbnormalClosure, description);
        }
    }

    private Uri ConnectUri()
    {
        if (string.IsNullOrEmpty(_options.Token))
        {
            return _uri;
        }

        var parameter = Uri.EscapeDataString(_options.TokenParameter) + "=" + Uri.EscapeDataString(_options.Token);
        var builder = new UriBuilder(_uri);
        builder.Query = string.IsNullOrEmpty(builder.Query) || builder.Query == "?" ? parameter : builder.Query.TrimStart('?') + "&" + parameter;
        return builder.Uri;
    }

    private async Task<(WebSocketCloseStatus Status, string? Description)> ReceiveAsync(ClientWebSocket socket, CancellationToken stopping)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        try
        {
            while (true)
            {
                buffer.ResetWrittenCount();
                ValueWebSocketReceiveResult result;
                do
                {
                    if (buffer.WrittenCount > _options.MaxMessageBytes)
                    {
                        var message = $"the server sent a frame over {_options.MaxMessageBytes} bytes";
                        ReportError(new SluiceException(message));
                        await CloseQuietlyAsync(socket, WebSocketCloseStatus.MessageTooBig);
                        return (WebSocketCloseStatus.MessageTooBig, message);
                    }

                    result = await socket.ReceiveAsync(buffer.GetMemory(4096), stopping);
                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        await CloseQuietlyAsync(socket, WebSocketCloseStatus.NormalClosure);
                        return (socket.CloseStatus ?? (WebSocketCloseStatus)1005, socket.CloseStatusDescription);
                    }

                    buffer.Advance(result.Count);
                }
                while (!result.EndOfMessage);

                if (result.MessageType == WebSocketMessageType.Binary)
                {
                    ReportError(new SluiceException("the server sent a binary frame; the protocol is JSON text"));
                    continue;
                }

                Handle(buffer.WrittenMemory);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            return (WebSocketCloseStatus.NormalClosure, "closed by the client");
        }
        catch (WebSocketException ex)
        {
            return ((WebSocketCloseStatus)AbnormalClosure, ex.Message);
        }
    }

    private static async Task CloseQuietlyAsync(ClientWebSocket socket, WebSocketCloseStatus status)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await socket.CloseOutputAsync(status, null, timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The connection is ending anyway.
        }
    }

    private async Task ResubscribeAsync(string topic, TopicState entry, SluicePosition? since, CancellationToken stopping)
    {
        // Only a route with history gives offsets, and only such a route accepts `since`.
        Action<Utf8JsonWriter>? extra = since is { } position ? writer =>
        {
            writer.WriteStartObject("since");
            writer.WriteNumber("offset", position.Offset);
            writer.WriteString("epoch", position.Epoch);
            writer.WriteEndObject();
        }
        : null;
        try
        {
            await RequestAsync("subscribe", topic, extra, "subscribed", stopping);
        }
        catch (SluiceException ex)
        {
            if (ex.Status is not null)
            {
                Forget(topic, entry, ex);
                ReportError(ex);
            }
            else if (State == SluiceClientState.Connected)
            {
                ReportError(ex); // a timeout; a lost connection is said by the state change and retried anyway
            }
        }
        catch (OperationCanceledException)
        {
            // Closed meanwhile.
        }
    }

    private void Forget(string topic, TopicState entry, SluiceException reason)
    {
        List<TaskCompletionSource<SluiceSubscription>> waiters;
        lock (_lock)
        {
            if (_topics.TryGetValue(topic, out var current) && current == entry)
            {
                _topics.Remove(topic);
            }

            waiters = [.. entry.Waiters];
            entry.Waiters.Clear();
        }

        foreach (var waiter in waiters)
        {
            waiter.TrySetException(reason);
        }
    }

    private void Handle(ReadOnlyMemory<byte> frame)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(frame);
        }
        catch (JsonException)
        {
            ReportError(new SluiceException($"the server sent a frame that is not JSON ({frame.Length} bytes)"));
            return;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                ReportError(new SluiceException($"the server sent a frame that is not a JSON object ({root.ValueKind})"));
                return;
            }

            if (root.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object)
            {
                OnError(error);
                return;
            }

            if (!TryGetString(root, "op", out var op) || !TryGetString(root, "topic", out var topic))
            {
                ReportError(new SluiceException("the server sent a frame without \"op\" and \"topic\""));
                return;
            }

            switch (op)
            {
                case "message":
                    OnMessage(topic, root);
                    break;
                case "join" or "leave":
                    Raise(PresenceChanged, new SluicePresenceChange(topic, TryGetString(root, "subject", out var subject) ? subject : null, op == "join"));
                    break;
                case "subscribed":
                    OnSubscribed(topic, root);
                    Answer(op, topic, root);
                    break;
                case "unsubscribed" or "presence":
                    Answer(op, topic, root);
                    break;
                default:
                    ReportError(new SluiceException($"the server sent an unknown op '{op}'"));
                    break;
            }
        }
    }

    private void OnMessage(string topic, JsonElement root)
    {
        var offset = root.TryGetProperty("offset", out var o) && o.ValueKind == JsonValueKind.Number && o.TryGetInt64(out var n) ? n : (long?)null;
        var epoch = TryGetString(root, "epoch", out var e) ? e : null;
        Channel<SluiceMessage>[] readers;
        lock (_lock)
        {
            if (!_topics.TryGetValue(topic, out var entry))
            {
                return; // unsubscribed meanwhile
            }

            if (offset is { } at && epoch is not null)
            {
                // The gateway promises no duplicates; this keeps the promise even if a replay and a live message overlapped.
                if (entry.Position is { } seen && seen.Epoch == epoch && at <= seen.Offset)
                {
                    return;
                }

                entry.Position = new SluicePosition(at, epoch);
            }

            readers = [.. _readers];
        }

        var message = new SluiceMessage(topic, root.TryGetProperty("data", out var data) ? data.Clone() : default, offset, epoch);
        foreach (var reader in readers)
        {
            reader.Writer.TryWrite(message);
        }

        Raise(MessageReceived, message);
    }

    private void OnSubscribed(string topic, JsonElement root)
    {
        var recovered = Recovered(root);
        List<TaskCompletionSource<SluiceSubscription>> waiters;
        lock (_lock)
        {
            if (!_topics.TryGetValue(topic, out var entry))
            {
                return;
            }

            entry.Acknowledged = true;
            entry.Recovered = recovered;
            // The answer's offset is where live messages start. Taken when there is no position yet, or when recovery
            // failed (the messages in between are gone); after a recovery the replayed messages move the position.
            if (root.TryGetProperty("offset", out var o) && o.TryGetInt64(out var offset) && TryGetString(root, "epoch", out var epoch)
                && (entry.Position is null || recovered == false))
            {
                entry.Position = new SluicePosition(offset, epoch);
            }

            waiters = [.. entry.Waiters];
            entry.Waiters.Clear();
        }

        var subscription = new SluiceSubscription(topic, recovered);
        foreach (var waiter in waiters)
        {
            waiter.TrySetResult(subscription);
        }

        Raise(Subscribed, subscription);
    }

    private void OnError(JsonElement error)
    {
        var status = error.TryGetProperty("status", out var s) && s.TryGetInt32(out var code) ? code : (int?)null;
        var policy = TryGetString(error, "policy", out var p) ? p : null;
        var message = TryGetString(error, "message", out var m) ? m : "(no message)";
        Pending? pending = null;
        lock (_lock)
        {
            // The protocol has no request ids: an error answers the oldest operation still unanswered.
            if (_pending.Count > 0)
            {
                pending = _pending[0];
                _pending.RemoveAt(0);
            }
        }

        var exception = new SluiceException($"{policy ?? "the gateway"} answered {status}: {message}", status, policy, pending?.Operation, pending?.Topic);
        if (pending?.Completion is { } completion)
        {
            completion.TrySetException(exception);
        }
        else
        {
            ReportError(exception);
        }
    }

    private void Answer(string op, string topic, JsonElement root)
    {
        Pending? answered = null;
        lock (_lock)
        {
            // Publishes are not acknowledged: any still pending before this answer went through.
            while (_pending.Count > 0 && _pending[0].Expect is null)
            {
                _pending.RemoveAt(0);
            }

            var index = _pending.FindIndex(p => p.Expect == op && p.Topic == topic);
            if (index >= 0)
            {
                answered = _pending[index];
                _pending.RemoveAt(index);
            }
        }

        answered?.Completion?.TrySetResult(root.Clone());
    }

    private async Task<JsonElement> RequestAsync(string op, string topic, Action<Utf8JsonWriter>? extra, string expect, CancellationToken cancellationToken)
    {
        var pending = new Pending(op, topic, expect, new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously));
        await SendAsync(Frame(op, topic, extra), pending, cancellationToken);
        try
        {
            return await pending.Completion!.Task.WaitAsync(_options.RequestTimeout, _options.TimeProvider, cancellationToken);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            lock (_lock)
            {
                _pending.Remove(pending);
            }

            if (ex is TimeoutException)
            {
                throw new SluiceException($"no answer to {op} '{topic}' within {_options.RequestTimeout.TotalSeconds:0.#} s", ex);
            }

            throw;
        }
    }

    private async Task SendAsync(byte[] frame, Pending pending, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken);
        try
        {
            ClientWebSocket socket;
            lock (_lock)
            {
                if (_socket is null || _state != SluiceClientState.Connected)
                {
                    throw new SluiceException($"not connected ({_state}): {pending.Operation} '{pending.Topic}' was not sent");
                }

                socket = _socket;
                // Queued before the send, under the send lock: the queue is in the order the gateway answers.
                _pending.Add(pending);
            }

            try
            {
                await socket.SendAsync(frame, WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
            }
            catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException)
            {
                lock (_lock)
                {
                    _pending.Remove(pending);
                }

                throw new SluiceException($"{pending.Operation} '{pending.Topic}' was not sent: {ex.Message}", ex);
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private static byte[] Frame(string op, string topic, Action<Utf8JsonWriter>? extra)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("op", op);
            writer.WriteString("topic", topic);
            extra?.Invoke(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private void FailPending(SluiceException reason)
    {
        Pending[] pending;
        lock (_lock)
        {
            pending = [.. _pending];
            _pending.Clear();
        }

        foreach (var p in pending)
        {
            p.Completion?.TrySetException(reason);
        }
    }

    private void Finish(SluiceStateChange change)
    {
        List<TaskCompletionSource<SluiceSubscription>> waiters = [];
        Channel<SluiceMessage>[] readers;
        lock (_lock)
        {
            if (_state == SluiceClientState.Closed)
            {
                return;
            }

            _state = SluiceClientState.Closed;
            foreach (var entry in _topics.Values)
            {
                waiters.AddRange(entry.Waiters);
                entry.Waiters.Clear();
            }

            readers = [.. _readers];
        }

        Raise(StateChanged, change);
        var closed = new SluiceException($"the client closed ({(int?)change.CloseStatus}{(change.CloseDescription is null ? "" : ": " + change.CloseDescription)})");
        _firstConnect.TrySetException(closed);
        foreach (var waiter in waiters)
        {
            waiter.TrySetException(closed);
        }

        foreach (var reader in readers)
        {
            reader.Writer.TryComplete();
        }
    }

    private void SetState(SluiceStateChange change)
    {
        lock (_lock)
        {
            _state = change.State;
        }

        Raise(StateChanged, change);
    }

    private void ReportError(SluiceException error)
    {
        try
        {
            Error?.Invoke(this, error);
        }
#pragma warning disable CA1031 // An application's error handler that throws must not end the receive loop.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private void Raise<T>(EventHandler<T>? handler, T value)
    {
        try
        {
            handler?.Invoke(this, value);
        }
#pragma warning disable CA1031 // An application's handler that throws must not end the receive loop: it is reported instead.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            ReportError(new SluiceException($"a {typeof(T).Name} handler threw: {ex.Message}", ex));
        }
    }

    private static bool? Recovered(JsonElement answer) =>
        answer.TryGetProperty("recovered", out var r) && r.ValueKind is JsonValueKind.True or JsonValueKind.False ? r.GetBoolean() : null;

    private static bool TryGetString(JsonElement element, string name, out string value)
    {
        value = string.Empty;
        if (!element.TryGetProperty(name, out var property) || property.ValueKind != JsonValueKind.String)
        {
            return false;
        }

        value = property.GetString()!;
        return value.Length > 0;
    }

    private sealed class TopicState
    {
        public SluicePosition? Position { get; set; }

        public bool Acknowledged { get; set; }

        public bool? Recovered { get; set; }

        public List<TaskCompletionSource<SluiceSubscription>> Waiters { get; } = [];
    }

    /// <summary>An operation sent and not yet answered; <see cref="Expect"/> is null for a publish (never answered when it succeeds).</summary>
    private sealed record Pending(string Operation, string Topic, string? Expect, TaskCompletionSource<JsonElement>? Completion);
}
