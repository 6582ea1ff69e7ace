using System.Text;
using Jint;
using Jint.Native;
using Jint.Native.Json;
using Jint.Runtime;
using Microsoft.Extensions.ObjectPool;

namespace Sluice.Policies;

/// <summary>Options of <see cref="ScriptPolicy"/> (<c>script</c>).</summary>
public sealed class ScriptPolicyOptions : IPolicyOptions
{
    /// <summary>
    /// Gets or sets the path of the JavaScript file, relative to the configuration file's folder. The file
    /// evaluates to a function <c>(message, context) =&gt; message or undefined</c>, or declares a function
    /// named <c>policy</c>.
    /// </summary>
    public string? File { get; set; }

    /// <summary>Gets or sets the script itself, instead of <see cref="File"/>.</summary>
    public string? Source { get; set; }

    /// <summary>Gets or sets how long one call may run, in milliseconds. Default: 100.</summary>
    public int TimeoutMs { get; set; } = 100;

    /// <summary>Gets or sets how much one call may allocate, in bytes. Default: 16 MiB.</summary>
    public long MemoryLimitBytes { get; set; } = 16 * 1024 * 1024;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if ((File is null) == (Source is null))
        {
            yield return "file: give exactly one of file and source";
        }

        if (TimeoutMs <= 0)
        {
            yield return "timeoutMs: must be positive";
        }

        if (MemoryLimitBytes <= 0)
        {
            yield return "memoryLimitBytes: must be positive";
        }
    }
}

/// <summary>
/// <c>script</c>: a JavaScript function runs for each message (Jint). It receives the message (the parsed object
/// for JSON, a string for other text, a Uint8Array for binary) and a context (<c>direction</c>, <c>route</c>,
/// <c>subject</c>, <c>connectionId</c>), and returns the message to forward (changed or not: an object or array
/// is sent as JSON, a string as text, a Uint8Array as binary) or <c>undefined</c> to drop it. Each call has a time
/// and a memory limit; a script that throws, runs too long or allocates too much has its message dropped and
/// logged, and the connection stays open.
/// </summary>
/// <remarks>
/// A Jint engine runs one call at a time, so the policy keeps a small pool of engines, each with the script
/// loaded; an engine whose call failed is discarded rather than reused.
/// </remarks>
public sealed class ScriptPolicy : MessagePolicy, IDisposable
{
    // Jint's default. The shared parse reads 1,000 levels, but Jint parses and serializes by recursion on the thread's
    // stack: deeper JSON is dropped rather than risk an overflow no one can catch.
    private const int MaxParseDepth = 64;

    private readonly ObjectPool<ScriptEngine> _engines;

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
                throw new PolicyConfigurationException(name, [$"file: '{file}' does not exist (looked for {path})"]);
            }

            source = System.IO.File.ReadAllText(path);
        }
        else
        {
            source = options.Source!;
        }

        var engines = new EnginePolicy(source, options, name);
        ScriptEngine first;
        try
        {
            first = engines.Create();
        }
        catch (Exception ex) when (ex is JintException or Acornima.ParseErrorException or InvalidOperationException)
        {
            throw new PolicyConfigurationException(name, [$"{(options.File is null ? "source" : "file")}: {ex.Message}"]);
        }

        // For a disposable type the provider's pool disposes the engines it does not keep (the broken ones).
        _engines = new DefaultObjectPoolProvider { MaximumRetained = Environment.ProcessorCount * 2 }.Create(engines);
        _engines.Return(first);
    }

    /// <inheritdoc />
    public void Dispose() => (_engines as IDisposable)?.Dispose();

    /// <inheritdoc />
    protected override ValueTask ApplyAsync(MessageContext context, MessageDelegate next)
    {
        var engine = _engines.Get();
        WebSocketMessage? result;
        var tooDeep = false;
        try
        {
            result = engine.Run(context);
        }
        catch (TooDeepException)
        {
            result = null;
            tooDeep = true;
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

        if (tooDeep)
        {
            // The client's nesting failed, not the script: dropped as the script's own failures are, but not as an error.
            context.Drop($"the message is nested deeper than a script reads ({MaxParseDepth} levels)");
            return default;
        }

        if (result is null)
        {
            context.Drop("the script returned undefined");
            return default;
        }

        context.Message = result;
        return next(context);
    }

    private sealed class TooDeepException : Exception;

    private sealed class EnginePolicy(string source, ScriptPolicyOptions options, string name) : IPooledObjectPolicy<ScriptEngine>
    {
        public ScriptEngine Create() => new(source, options, name);

        public bool Return(ScriptEngine engine) => !engine.Broken;
    }

    private sealed class ScriptEngine : IDisposable
    {
        private readonly Engine _engine;
        private readonly JsValue _function;
        private readonly JsonParser _parser;
        private readonly JsonSerializer _serializer;

        public ScriptEngine(string source, ScriptPolicyOptions options, string name)
        {
            _engine = new Engine(o =>
            {
                o.TimeoutInterval(TimeSpan.FromMilliseconds(options.TimeoutMs))
                    // Regular expressions run in .NET's engine, outside the script timeout: bound them the same way.
                    .RegexTimeoutInterval(TimeSpan.FromMilliseconds(options.TimeoutMs))
                    .LimitMemory(options.MemoryLimitBytes)
                    .LimitRecursion(256)
                    .Strict();
                o.Json.MaxParseDepth = MaxParseDepth;
            });
            var completion = _engine.Evaluate(source, name);
            _function = IsFunction(completion) ? completion : _engine.GetValue("policy");
            if (!IsFunction(_function))
            {
                throw new InvalidOperationException("the script must evaluate to a function (message, context) => message, or declare a function named policy");
            }

            _parser = new JsonParser(_engine);
            _serializer = new JsonSerializer(_engine);
        }

        public bool Broken { get; set; }

        public void Dispose() => _engine.Dispose();

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

        private static bool IsFunction(JsValue value) => value.IsObject() && value.AsObject() is Jint.Native.Function.Function;

        public WebSocketMessage? Run(MessageContext context)
        {
            _engine.Constraints.Reset();
            var message = context.Message;
            JsValue argument = message.IsBinary
                ? JsValue.FromObject(_engine, message.Payload.ToArray())
                : context.IsJson ? Parse(message.Text) : new JsString(message.Text);

            var info = new JsObject(_engine);
            info.Set("direction", context.Direction == MessageDirection.Inbound ? "inbound" : "outbound");
            info.Set("route", context.Connection.RoutePattern);
            info.Set("subject", context.Connection.Subject is { } subject ? new JsString(subject) : JsValue.Null);
            info.Set("connectionId", context.Connection.Id);

            var result = _engine.Invoke(_function, argument, info);
            if (result.IsUndefined() || result.IsNull())
            {
                return null;
            }

            if (result.IsString())
            {
                return WebSocketMessage.FromText(result.AsString());
            }

            if (result.ToObject() is byte[] bytes)
            {
                return WebSocketMessage.FromBinary(bytes);
            }

            return WebSocketMessage.FromText(Encoding.UTF8.GetBytes(_serializer.Serialize(result).AsString()));
        }
    }
}
