using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BenchmarkDotNet.Attributes;
using Json.Schema;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Policies;

namespace Sluice.Benchmarks;

/// <summary>
/// Per message, 1 KiB of JSON: json-redact (two fields), json-schema (10 properties), json-filter, rate-limit, and all
/// four chained, which parse the message once between them. Each is compared with the same work written naively: a
/// JsonNode parse per policy and a serialisation per changing policy. Target: the chain at least 2x the naive chain.
/// </summary>
[MemoryDiagnoser]
public class PolicyChainBenchmarks
{
    private const string Schema = """
        {
          "type": "object",
          "required": ["type", "user", "text"],
          "properties": {
            "type": { "type": "string", "enum": ["chat", "edit", "typing"] },
            "user": { "type": "string", "maxLength": 32 },
            "room": { "type": "string" },
            "text": { "type": "string", "maxLength": 2000 },
            "password": { "type": "string" },
            "card": { "type": "object", "properties": { "number": { "type": "string" }, "exp": { "type": "string" } } },
            "seq": { "type": "integer", "minimum": 0 },
            "sentAt": { "type": "string" },
            "tags": { "type": "array", "items": { "type": "string" } },
            "meta": { "type": "object" }
          }
        }
        """;

    private static readonly EvaluationOptions s_flag = new() { OutputFormat = OutputFormat.Flag };
    private readonly JsonSchema _naiveSchema = JsonSchema.FromText(Schema, new BuildOptions { SchemaRegistry = new SchemaRegistry() });
    private WebSocketMessage _message = null!;
    private MessageContext _context = null!;
    private MessageDelegate _redact = null!;
    private MessageDelegate _schema = null!;
    private MessageDelegate _filter = null!;
    private MessageDelegate _rate = null!;
    private MessageDelegate _chain = null!;

    public static byte[] Payload { get; } = CreatePayload();

    [GlobalSetup]
    public void Setup()
    {
        _message = WebSocketMessage.FromText(Payload);
        _redact = Build(b => b.UsePolicy(new JsonRedactPolicy("/password", "/card/number")));
        _schema = Build(b => b.UsePolicy(SchemaPolicy()));
        _filter = Build(b => b.UsePolicy(FilterPolicy()));
        _rate = Build(b => b.UsePolicy(RatePolicy()));
        _chain = Build(b =>
        {
            b.UsePolicy(SchemaPolicy());
            b.UsePolicy(new JsonRedactPolicy("/password", "/card/number"));
            b.UsePolicy(FilterPolicy());
            b.UsePolicy(RatePolicy());
        });

        // The policies read only the connection's id (the rate limit's partition): an object without a socket will do.
        var connection = (WebSocketConnection)RuntimeHelpers.GetUninitializedObject(typeof(ProxyConnection));
        _context = new MessageContext(connection, MessageDirection.Inbound, new NullSink());
    }

    [Benchmark]
    public WebSocketMessage Redact() => Run(_redact);

    [Benchmark]
    public WebSocketMessage NaiveRedact()
    {
        var node = JsonNode.Parse(_message.Payload.Span)!.AsObject();
        node.Remove("password");
        ((JsonObject)node["card"]!).Remove("number");
        return WebSocketMessage.FromText(Encoding.UTF8.GetBytes(node.ToJsonString()));
    }

    [Benchmark]
    public WebSocketMessage SchemaValidate() => Run(_schema);

    [Benchmark]
    public WebSocketMessage NaiveSchemaValidate()
    {
        // JsonSchema.Net evaluates a JsonElement: the naive policy parses its own document.
        using var document = JsonDocument.Parse(_message.Payload);
        return _naiveSchema.Evaluate(document.RootElement, s_flag).IsValid ? _message : throw new InvalidOperationException();
    }

    [Benchmark]
    public WebSocketMessage Filter() => Run(_filter);

    [Benchmark]
    public WebSocketMessage NaiveFilter()
    {
        var node = JsonNode.Parse(_message.Payload.Span);
        return node?["type"]?.GetValue<string>() is "internal" or "debug" ? throw new InvalidOperationException() : _message;
    }

    [Benchmark]
    public WebSocketMessage RateLimit() => Run(_rate);

    [Benchmark]
    public WebSocketMessage Chain() => Run(_chain);

    [Benchmark(Baseline = true)]
    public WebSocketMessage NaiveChain()
    {
        NaiveSchemaValidate();
        var redacted = NaiveRedact();
        var filtered = JsonNode.Parse(redacted.Payload.Span);
        if (filtered?["type"]?.GetValue<string>() is "internal" or "debug")
        {
            throw new InvalidOperationException();
        }

        return redacted;
    }

    private WebSocketMessage Run(MessageDelegate chain)
    {
        _context.Reset(_message, 0);
        var pending = chain(_context);
        if (!pending.IsCompletedSuccessfully || _context.Outcome != MessageOutcome.Forwarded)
        {
            throw new InvalidOperationException($"the message was not forwarded: {_context.Outcome}");
        }

        var result = _context.Message;
        _context.Clear();
        return result;
    }

    internal static MessageDelegate Build(Action<WebSocketPipelineBuilder> configure)
    {
        var builder = new WebSocketPipelineBuilder();
        configure(builder);
        using var services = new ServiceCollection().BuildServiceProvider();
        return MessagePipeline.Build(builder.Interceptors, services).Inbound;
    }

    private static JsonSchemaPolicy SchemaPolicy() =>
        new(new JsonSchemaPolicyOptions { Schema = JsonNode.Parse(Schema), Action = PolicyAction.Reply });

    private static JsonFilterPolicy FilterPolicy() =>
        new(new JsonFilterPolicyOptions { Path = "/type", In = ["internal", "debug"], Action = PolicyAction.Drop });

    private static RateLimitPolicy RatePolicy() =>
        new(new RateLimitPolicyOptions { Permits = 1_000_000_000, PerSeconds = 1, Action = PolicyAction.Reply });

    private static byte[] CreatePayload()
    {
        var text = new string('x', 640);
        var json = $$"""
            {"type":"chat","user":"ann","room":"lobby","password":"hunter2","card":{"number":"4111111111111111","exp":"12/30"},
             "seq":42,"sentAt":"2026-11-30T09:00:00Z","tags":["a","b","c"],"meta":{"client":"web","version":"1.2.3"},
             "text":"{{text}}"}
            """.ReplaceLineEndings(string.Empty);
        return Encoding.UTF8.GetBytes(json);
    }

    private sealed class NullSink : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context) => default;

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
        }
    }
}
