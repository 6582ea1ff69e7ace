using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Jint;
using Jint.Native;
using Jint.Native.Json;
using Jint.Native.Object;
using Jint.Runtime;
using Jint.Runtime.Descriptors;
using Jint.Runtime.Interop;
using Microsoft.Extensions.ObjectPool;

namespace Sluice.Policies;

/// <summary>Options of <see cref="ScriptPolicy"/> (<c>script</c>).</summary>
public sealed class ScriptPolicyOptions : IPolicyOptions
{
    /// <summary>
    /// Gets or sets the path of the JavaScript file, relative to the configuration file's folder. The file
    /// evaluates to a function <c>(data, context) =&gt; data or undefined</c> (sync or async), or declares a
    /// function named <c>policy</c>.
    /// </summary>
    public string? File { get; set; }

    /// <summary>Gets or sets the script itself, instead of <see cref="File"/>.</summary>
    public string? Source { get; set; }

    /// <summary>
    /// Gets or sets how long one call may run, in milliseconds, including the wait for a returned promise.
    /// Default: 100.
    /// </summary>
    public int TimeoutMs { get; set; } = 100;

    /// <summary>Gets or sets how much one call may allocate, in bytes; it also bounds <c>context.state</c>. Default: 16 MiB.</summary>
    public long MemoryLimitBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// Gets or sets whether JSON text reaches the script parsed (and objects it returns are sent as JSON), as in
    /// the first release. Default: false, the text as a string, as Zuplo's policies receive it.
    /// </summary>
    public bool Json { get; set; }

    /// <summary>
    /// Gets or sets the control frames the script sees besides data messages: <c>ping</c>, <c>pong</c>, <c>close</c>.
    /// For those, <c>data</c> is null and <c>context.frame</c> is <c>{type, code, reason}</c>; returning undefined
    /// swallows a ping (no pong) or a pong, returning <c>{code, reason}</c> replaces a close's code and reason sent
    /// on, and any other value lets the frame go on unchanged. Default: none.
    /// </summary>
    public List<string> Frames { get; set; } = [];

    /// <inheritdoc />
    public IEnumerable<PolicyOptionError> Validate()
    {
        foreach (var error in ControlFrameOptions.Validate(Frames))
        {
            yield return error;
        }

        if ((File is null) == (Source is null))
        {
            yield return new("file", "give exactly one of file and source");
        }

        if (TimeoutMs <= 0)
        {
            yield return new("timeoutMs", "must be positive");
        }

        if (MemoryLimitBytes <= 0)
        {
            yield return new("memoryLimitBytes", "must be positive");
        }
    }
}

/// <summary>
/// <c>script</c>: a JavaScript function runs for each message (Jint), in the manner of Zuplo's policy functions.
/// It receives the data (the text as a string, an <c>ArrayBuffer</c> for binary; with <see cref="ScriptPolicyOptions.Json"/>
/// the parsed value of JSON text) and a context, and returns the data to forward (changed or not) or
/// <c>undefined</c> to drop it; an async function's promise is awaited. The context holds <c>direction</c>,
/// <c>route</c>, <c>connectionId</c>, <c>subject</c>, <c>claims</c>, <c>request</c> (<c>headers.get(name)</c>,
/// <c>query</c>, <c>params</c>), <c>state</c> (kept for the connection), <c>source.send</c>, <c>target.send</c> and
/// <c>close(code, reason)</c>. Each call has a time and a memory limit; a script that throws, runs too long,
/// allocates too much or returns what cannot be sent has its message dropped and logged, and the connection stays open.
/// </summary>
/// <remarks>
/// <para>A Jint engine runs one call at a time, so the policy keeps a small pool of engines, each with the script
/// loaded; an engine whose call failed is discarded rather than reused.</para>
/// <para><c>state</c> lives outside the engines (any engine may run a connection's next message): it is kept as
/// JSON, read into the engine when a call first touches it and written back when that call succeeds, under a lock
/// so a connection's inbound and outbound calls see each other's changes. A call that fails leaves it as it was.
/// It is dropped when the connection closes. A policy that is rebuilt (a configuration reload) starts afresh.</para>
/// </remarks>
public sealed class ScriptPolicy : MessagePolicy, IDisposable
{
    // Jint's default. The shared parse reads 1,000 levels, but Jint parses and serializes by recursion on the thread's
    // stack: deeper JSON is dropped rather than risk an overflow no one can catch.
    private const int MaxParseDepth = 64;

    private readonly ObjectPool<ScriptEngine> _engines;
    private readonly ConditionalWeakTable<WebSocketConnection, ConnectionState> _states = [];
    private readonly long _maxStateBytes;

    /// <summary>Creates the policy; <paramref name="baseDirectory"/> resolves a relative <c>file</c>.</summary>
    /// <exception cref="PolicyConfigurationException">The options are invalid, the file is missing or the script does not compile.</exception>
    public ScriptPolicy(ScriptPolicyOptions options, string name = "script", string? baseDirectory = null)
        : base(name)
    {
        ArgumentNullException.ThrowIfNull(options);
        PolicyValidation.ThrowIfInvalid(options, name);
        string source;
        if (options.File is { } file)
        {
            var path = Path.GetFullPath(file, baseDirectory ?? Directory.GetCurrentDirectory());
            if (!System.IO.File.Exists(path))
            {
                throw new PolicyConfigurationException(name, [new("file", $"'{file}' does not exist (looked for {path})")]);
            }

            source = System.IO.File.ReadAllText(path);
        }
        else
        {
            source = options.Source!;
        }

        _maxStateBytes = options.MemoryLimitBytes;
        ControlFrames = ControlFrameOptions.Parse(options.Frames);
        var engines = new EnginePolicy(source, options, name, this);
        ScriptEngine first;
        try
        {
            first = engines.Create();
        }
        catch (Exception ex) when (ex is JintException or Acornima.ParseErrorException or InvalidOperationException)
        {
            throw new PolicyConfigurationException(name, [new(options.File is null ? "source" : "file", ex.Message)]);
        }

        // For a disposable type the provider's pool disposes the engines it does not keep (the broken ones).
        _engines = new DefaultObjectPoolProvider { MaximumRetained = Environment.ProcessorCount * 2 }.Create(engines);
        _engines.Return(first);
    }

    /// <inheritdoc />
    public override ControlFrames ControlFrames { get; }

    /// <inheritdoc />
    public void Dispose() => (_engines as IDisposable)?.Dispose();

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next) =>
        Thread.CurrentThread.IsThreadPoolThread ? Run(context, next) : RunOnThreadPoolAsync(context, next);

    // A script runs synchronously for up to its timeout. Off the thread pool, the caller is a socket's I/O thread (a
    // server that runs continuations inline, as the gateway does), which would stall every connection it serves for
    // that long: the script moves to the thread pool first.
    private async ValueTask RunOnThreadPoolAsync(MessageContext context, MessageDelegate next)
    {
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        await Run(context, next);
    }

    private ValueTask Run(MessageContext context, MessageDelegate next)
    {
        var engine = _engines.Get();
        ScriptResult result;
        try
        {
            result = engine.Run(context);
        }
        catch (TooDeepException)
        {
            // The client's nesting failed, not the script: dropped as the script's own failures are, but not as an error.
            context.Drop($"the message is nested deeper than a script reads ({MaxParseDepth} levels)");
            return default;
        }
        catch
        {
            // An engine interrupted mid-call may hold a half-built state: do not give it to the next message.
            engine.Broken = true;
            throw;
        }
        finally
        {
            _engines.Return(engine);
        }

        if (result.Sends is { } sends)
        {
            return FinishAsync(context, next, result, sends);
        }

        return Finish(context, next, result.Message, result.Closed);
    }

    private static ValueTask Finish(MessageContext context, MessageDelegate next, WebSocketMessage? message, bool closed)
    {
        if (closed)
        {
            return default;
        }

        if (message is null)
        {
            context.Drop("the script returned undefined");
            return default;
        }

        if (!ReferenceEquals(message, context.Message))
        {
            // Only a changed message: setting it again would throw away the parse later policies share.
            context.Message = message;
        }

        return next(context);
    }

    private static async ValueTask FinishAsync(MessageContext context, MessageDelegate next, ScriptResult result, List<Task> sends)
    {
        // The script's sends were queued during the call, ahead of the message it returned; wait until they are taken.
        foreach (var send in sends)
        {
            try
            {
                await send;
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or System.Net.WebSockets.WebSocketException)
            {
                // A leg that failed ends its connection by itself; the policy has nothing to add.
            }
        }

        await Finish(context, next, result.Message, result.Closed);
    }

    private ConnectionState StateOf(WebSocketConnection connection)
    {
        if (_states.TryGetValue(connection, out var state))
        {
            return state;
        }

        state = _states.GetValue(connection, static _ => new ConnectionState());
        // The weak table would let it go with the connection anyway; a closed connection's state goes at once.
        connection.Closed.Register(static s => { var (table, c) = ((ConditionalWeakTable<WebSocketConnection, ConnectionState>, WebSocketConnection))s!; table.Remove(c); }, (_states, connection));
        return state;
    }

    private readonly record struct ScriptResult(WebSocketMessage? Message, bool Closed, List<Task>? Sends);

    private sealed class TooDeepException : Exception;

    private sealed class ConnectionState
    {
        public readonly Lock Gate = new();

        public string? Json;
    }

    private sealed class EnginePolicy(string source, ScriptPolicyOptions options, string name, ScriptPolicy policy) : IPooledObjectPolicy<ScriptEngine>
    {
        public ScriptEngine Create() => new(source, options, name, policy);

        public bool Return(ScriptEngine engine) => !engine.Broken;
    }

    /// <summary>What the functions of the context act on while one call runs.</summary>
    private sealed class Call(MessageContext context)
    {
        public MessageContext Context { get; } = context;

        public List<Task>? Sends { get; set; }

        public bool Closed { get; set; }

        public JsValue? Claims { get; set; }

        public JsValue? Request { get; set; }

        public JsValue? State { get; set; }

        public ConnectionState? StateHolder { get; set; }
    }

    private sealed class ScriptEngine : IDisposable
    {
        private readonly Engine _engine;
        private readonly JsValue _function;
        private readonly JsonParser _parser;
        private readonly JsonSerializer _serializer;
        private readonly ScriptPolicy _policy;
        private readonly bool _json;
        private readonly TimeSpan _timeout;

        // Shared by every call of this engine, frozen so no call can leave anything in them for the next connection.
        private readonly JsObject _source;
        private readonly JsObject _target;
        private readonly JsValue _close;
        private readonly JsObject _headers;
        private readonly JsObject _prototype;
        private readonly JsValue _objectCreate;

        private Call? _call;

        public ScriptEngine(string source, ScriptPolicyOptions options, string name, ScriptPolicy policy)
        {
            _policy = policy;
            _json = options.Json;
            _timeout = TimeSpan.FromMilliseconds(options.TimeoutMs);
            _engine = new Engine(o =>
            {
                o.TimeoutInterval(_timeout)
                    // Regular expressions run in .NET's engine, outside the script timeout: bound them the same way.
                    .RegexTimeoutInterval(_timeout)
                    .LimitMemory(options.MemoryLimitBytes)
                    .LimitRecursion(256)
                    .Strict();
                o.Json.MaxParseDepth = MaxParseDepth;
            });
            var completion = _engine.Evaluate(source, name);
            _function = IsFunction(completion) ? completion : _engine.GetValue("policy");
            if (!IsFunction(_function))
            {
                throw new InvalidOperationException("the script must evaluate to a function (data, context) => data, or declare a function named policy");
            }

            _parser = new JsonParser(_engine);
            _serializer = new JsonSerializer(_engine);

            _source = Frozen(("send", Function("send", (_, args) => Send(toSource: true, args.Length > 0 ? args[0] : JsValue.Undefined))));
            _target = Frozen(("send", Function("send", (_, args) => Send(toSource: false, args.Length > 0 ? args[0] : JsValue.Undefined))));
            _close = Function("close", (_, args) => Close(args));
            _headers = Frozen(("get", Function("get", (_, args) => Header(args.Length > 0 ? args[0] : JsValue.Undefined))));
            _prototype = CreatePrototype();
            _objectCreate = _engine.Intrinsics.Object.Get("create");
        }

        public bool Broken { get; set; }

        private Call CurrentCall => _call ?? throw new JavaScriptException(_engine.Intrinsics.Error, "the context is only valid while the call for its message runs");

        public void Dispose() => _engine.Dispose();

        private static bool IsFunction(JsValue value) => value.IsObject() && value.AsObject() is Jint.Native.Function.Function;

        private ClrFunction Function(string name, Func<JsValue, JsValue[], JsValue> body) => new(_engine, name, body);

        private JsObject Frozen(params (string Name, JsValue Value)[] properties)
        {
            var o = new JsObject(_engine);
            foreach (var (name, value) in properties)
            {
                o.DefineOwnProperty(name, new PropertyDescriptor(value, writable: false, enumerable: true, configurable: false));
            }

            o.PreventExtensions();
            return o;
        }

        private JsValue Parse(string json)
        {
            try
            {
                return _parser.Parse(json);
            }
            catch (JavaScriptException)
            {
                // The shared parse has read this text, so only the depth limit can refuse it.
                throw new TooDeepException();
            }
        }

        public ScriptResult Run(MessageContext context)
        {
            _engine.Constraints.Reset();
            var started = Stopwatch.GetTimestamp();
            var message = context.Message;
            // A control frame (frames option) has no data: the script reads context.frame.
            JsValue data = message.IsControl
                ? JsValue.Null
                : message.IsBinary
                    ? _engine.Intrinsics.ArrayBuffer.Construct(message.Payload.ToArray())
                    : _json && context.IsJson ? Parse(message.Text) : new JsString(message.Text);

            var call = new Call(context);
            _call = call;
            var succeeded = false;
            try
            {
                var result = _engine.Invoke(_function, data, CreateContext()).UnwrapIfPromise(Remaining(started));
                // The text it was given, returned unchanged (strings are immutable): forwarded as it came, not encoded again.
                var outgoing = call.Closed ? null
                    : message.IsControl ? ToControl(result, message)
                    : ReferenceEquals(result, data) && data.IsString() ? message : ToMessage(result);
                SaveState(call);
                succeeded = true;
                return new ScriptResult(outgoing, call.Closed, call.Sends);
            }
            finally
            {
                _call = null;
                if (call.StateHolder is { } holder)
                {
                    holder.Gate.Exit();
                }

                if (!succeeded && call.Sends is { } sends)
                {
                    // What the script sent before it failed is on its way; no one waits for it, but its faults are observed.
                    foreach (var send in sends)
                    {
                        _ = send.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                    }
                }
            }
        }

        private TimeSpan Remaining(long started)
        {
            var left = _timeout - Stopwatch.GetElapsedTime(started);
            return left > TimeSpan.Zero ? left : TimeSpan.FromTicks(1);
        }

        private ObjectInstance CreateContext()
        {
            // An empty object over the engine's frozen prototype: the only allocation a call makes for its context.
            // What a script writes on it stays on this call's object; what it reads comes from the current call.
            return (ObjectInstance)_engine.Call(_objectCreate, _prototype);
        }

        private JsObject CreatePrototype()
        {
            var prototype = new JsObject(_engine);
            void Getter(string name, Func<Call, JsValue> read) =>
                prototype.DefineOwnProperty(name, new GetSetPropertyDescriptor(Function(name, (_, _) => read(CurrentCall)), JsValue.Undefined, enumerable: true, configurable: false));

            Getter("direction", c => c.Context.Direction == MessageDirection.Inbound ? "inbound" : "outbound");
            Getter("route", c => c.Context.Connection.RoutePattern);
            Getter("connectionId", c => c.Context.Connection.Id);
            Getter("subject", c => c.Context.Connection.Subject is { } subject ? new JsString(subject) : JsValue.Null);
            // Built on first read in a call: a script that does not read them pays nothing for them.
            Getter("claims", c => c.Claims ??= BuildClaims(c.Context.Connection));
            Getter("request", c => c.Request ??= BuildRequest(c.Context.Connection));
            Getter("state", c => c.State ??= EnterState(c));
            Getter("frame", c => Frame(c.Context.Message));
            foreach (var (name, value) in new (string, JsValue)[] { ("source", _source), ("target", _target), ("close", _close) })
            {
                prototype.DefineOwnProperty(name, new PropertyDescriptor(value, writable: false, enumerable: true, configurable: false));
            }

            prototype.PreventExtensions();
            return prototype;
        }

        private WebSocketMessage? ToMessage(JsValue result)
        {
            if (result.IsUndefined() || result.IsNull())
            {
                return null;
            }

            if (result.IsString())
            {
                return WebSocketMessage.FromText(result.AsString());
            }

            if (TryGetBytes(result) is { } bytes)
            {
                return WebSocketMessage.FromBinary(bytes);
            }

            if (!_json)
            {
                throw new InvalidOperationException($"the script returned {Describe(result)}: return a string, an ArrayBuffer, a Uint8Array or undefined (or set json: true to send values as JSON)");
            }

            var json = _serializer.Serialize(result);
            if (!json.IsString())
            {
                throw new InvalidOperationException($"the script returned {Describe(result)}, which has no JSON form");
            }

            return WebSocketMessage.FromText(Encoding.UTF8.GetBytes(json.AsString()));
        }

        /// <summary>
        /// What a script's result makes of a control frame: undefined swallows a ping or pong (a close cannot be
        /// swallowed: the engine completes it as received); <c>{code, reason}</c> replaces a close; anything else lets
        /// the frame go on unchanged. The engine checks the code and reason of a replaced close before sending it.
        /// </summary>
        private static WebSocketMessage? ToControl(JsValue result, WebSocketMessage frame)
        {
            if (result.IsUndefined() || result.IsNull())
            {
                return frame.Type == MessageType.Close ? frame : null;
            }

            if (frame.Type != MessageType.Close || !result.IsObject())
            {
                return frame;
            }

            var returned = result.AsObject();
            var code = returned.Get("code");
            var reason = returned.Get("reason");
            if (code.IsUndefined() && reason.IsUndefined())
            {
                return frame;
            }

            System.Net.WebSockets.WebSocketCloseStatus? status = frame.CloseStatus;
            if (!code.IsUndefined())
            {
                var number = code.IsNumber() ? code.AsNumber() : double.NaN;
                if (number != Math.Floor(number) || number is < 0 or > ushort.MaxValue)
                {
                    throw new InvalidOperationException($"the script returned the close code {TypeConverter.ToString(code)}, which is not a 16-bit number");
                }

                status = (System.Net.WebSockets.WebSocketCloseStatus)(int)number;
            }

            var text = reason.IsUndefined() ? frame.CloseDescription : reason.IsNull() ? null : TypeConverter.ToString(reason);
            if (status is null && !string.IsNullOrEmpty(text))
            {
                throw new InvalidOperationException("the script returned a close reason without a code");
            }

            return WebSocketMessage.FromClose(status, text);
        }

        /// <summary><c>context.frame</c>: <c>{type, code, reason}</c> for a control frame, null for a data message.</summary>
        private JsValue Frame(WebSocketMessage message)
        {
            if (!message.IsControl)
            {
                return JsValue.Null;
            }

            var frame = new JsObject(_engine);
            frame.Set("type", message.Type switch { MessageType.Close => "close", MessageType.Ping => "ping", _ => "pong" });
            frame.Set("code", message.CloseStatus is { } code ? new JsNumber((int)code) : JsValue.Null);
            frame.Set("reason", message.CloseDescription is { } reason ? new JsString(reason) : JsValue.Null);
            return frame;
        }

        private static byte[]? TryGetBytes(JsValue value) => value switch
        {
            JsArrayBuffer buffer => buffer.ToObject() as byte[],
            JsTypedArray typed => typed.ToObject() as byte[],
            _ => null,
        };

        private static string Describe(JsValue value) => value.Type switch
        {
            Types.Number => "a number",
            Types.Boolean => "a boolean",
            Types.BigInt => "a bigint",
            Types.Symbol => "a symbol",
            _ => value is Jint.Native.Function.Function ? "a function" : "an object",
        };

        private JsBoolean Send(bool toSource, JsValue data)
        {
            var call = CurrentCall;
            WebSocketMessage message = data.IsString()
                ? WebSocketMessage.FromText(data.AsString())
                : TryGetBytes(data) is { } bytes
                    ? WebSocketMessage.FromBinary(bytes)
                    : throw new JavaScriptException(_engine.Intrinsics.TypeError, "send takes a string, an ArrayBuffer or a Uint8Array");
            var context = call.Context;
            var connection = context.Connection;
            if (connection.IsClosing)
            {
                // Nothing can reach a closing connection; the script learns it from the result rather than a throw.
                return JsBoolean.False;
            }

            try
            {
                ValueTask flushed;
                if (toSource == (context.Direction == MessageDirection.Inbound))
                {
                    // To the client: the source of an inbound message, the target of an outbound one. After the
                    // outbound chain, as a policy's reply is.
                    flushed = connection.SendToClientAsync(message);
                }
                else if (connection is ProxyConnection proxy)
                {
                    // To the backend: the target of an inbound message, the source of an outbound one.
                    flushed = proxy.SendToBackendAsync(message);
                }
                else
                {
                    // A hosted route: the other side is the app's handler, not a socket. An outbound message's source
                    // is the app itself; an inbound message reaches the handler by being returned.
                    throw new JavaScriptException(_engine.Intrinsics.TypeError, context.Direction == MessageDirection.Inbound
                        ? "target.send: on a hosted route the target of an inbound message is the handler; return the data to pass it on"
                        : "source.send: on a hosted route the source of an outbound message is the app; there is no socket to send to");
                }

                if (!flushed.IsCompletedSuccessfully)
                {
                    (call.Sends ??= []).Add(flushed.AsTask());
                }

                return JsBoolean.True;
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or System.Net.WebSockets.WebSocketException)
            {
                // The connection closed under the call.
                return JsBoolean.False;
            }
        }

        private JsValue Close(JsValue[] args)
        {
            var call = CurrentCall;
            var code = args.Length > 0 && args[0].IsNumber() ? args[0].AsNumber() : 1000;
            var reason = args.Length > 1 && !args[1].IsUndefined() ? TypeConverter.ToString(args[1]) : null;
            if (code != Math.Floor(code) || !IsSendableCloseCode((int)code))
            {
                throw new JavaScriptException(_engine.Intrinsics.TypeError, $"close: {code} is not a close code that may be sent (1000-1003, 1007-1014, 3000-4999)");
            }

            if (reason is not null && Encoding.UTF8.GetByteCount(reason) > 123)
            {
                throw new JavaScriptException(_engine.Intrinsics.TypeError, "close: the reason is longer than 123 bytes of UTF-8");
            }

            call.Closed = true;
            call.Context.Close((System.Net.WebSockets.WebSocketCloseStatus)(int)code, reason);
            return JsValue.Undefined;
        }

        private static bool IsSendableCloseCode(int code) =>
            code is (>= 1000 and <= 1003) or (>= 1007 and <= 1014) or (>= 3000 and <= 4999);

        private JsValue Header(JsValue name)
        {
            var headers = CurrentCall.Context.Connection.RequestHeaders;
            return name.IsString() && headers.TryGetValue(name.AsString(), out var values) && values.Count > 0
                ? new JsString(values.ToString())
                : JsValue.Null;
        }

        private JsObject BuildClaims(WebSocketConnection connection)
        {
            var claims = new JsObject(_engine);
            foreach (var group in connection.User.Claims.GroupBy(c => c.Type, StringComparer.Ordinal))
            {
                var values = group.Select(c => (JsValue)new JsString(c.Value)).ToArray();
                claims.Set(group.Key, values.Length == 1 ? values[0] : new JsArray(_engine, values));
            }

            return claims;
        }

        private JsObject BuildRequest(WebSocketConnection connection)
        {
            var query = new JsObject(_engine);
            foreach (var (key, values) in connection.Query)
            {
                query.Set(key, values.ToString());
            }

            var parameters = new JsObject(_engine);
            foreach (var (key, value) in connection.RouteValues)
            {
                parameters.Set(key, Convert.ToString(value, CultureInfo.InvariantCulture) ?? string.Empty);
            }

            var request = new JsObject(_engine);
            request.Set("headers", _headers);
            request.Set("query", query);
            request.Set("params", parameters);
            return request;
        }

        private JsValue EnterState(Call call)
        {
            var holder = _policy.StateOf(call.Context.Connection);
            holder.Gate.Enter();
            call.StateHolder = holder;
            return holder.Json is { } json ? _parser.Parse(json) : new JsObject(_engine);
        }

        private void SaveState(Call call)
        {
            if (call is not { StateHolder: { } holder, State: { } state })
            {
                return;
            }

            var json = _serializer.Serialize(state).AsString();
            if (json.Length * 2L > _policy._maxStateBytes)
            {
                throw new InvalidOperationException($"context.state grew beyond {_policy._maxStateBytes} bytes; it was left as it was");
            }

            holder.Json = json;
        }
    }
}
