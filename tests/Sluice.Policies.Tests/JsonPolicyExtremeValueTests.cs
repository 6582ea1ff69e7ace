using System.Net.WebSockets;
using FsCheck.Xunit;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Sluice.Tests.Infrastructure;

namespace Sluice.Policies.Tests;

/// <summary>A server with one route per policy that reads JSON (json-schema runs through the gateway process: see the gateway's JsonPolicyHardeningTests).</summary>
public sealed class EveryJsonPolicyServer : IAsyncLifetime
{
    public static readonly string[] Routes = ["redact", "filter", "filter-strict", "transform", "rate-limit", "log", "when", "script"];

    private readonly ILoggerFactory _loggers;

    public EveryJsonPolicyServer() =>
        _loggers = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(new CountingLoggerProvider(LogLines)));

    public TestServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await TestServer.StartAsync(app =>
        {
            Map(app, "redact", new JsonRedactPolicy("/password"));
            Map(app, "filter", new JsonFilterPolicy(new JsonFilterPolicyOptions { Path = "/type", EqualsValue = "internal", Action = PolicyAction.Reply }));
            Map(app, "filter-strict", new JsonFilterPolicy(new JsonFilterPolicyOptions { Path = "/type", EqualsValue = "internal", Action = PolicyAction.Reply, Unparsable = UnparsableJson.Drop }));
            Map(app, "transform", new JsonTransformPolicy(new JsonTransformPolicyOptions { Set = new() { ["/seen"] = true } }));
            Map(app, "rate-limit", new RateLimitPolicy(new RateLimitPolicyOptions { Permits = 1_000_000, Key = "/v", Action = PolicyAction.Reply }));
            Map(app, "log", new LogPolicy(new LogPolicyOptions { Redact = ["/password"] }, _loggers));
            Map(app, "when", new JsonTransformPolicy(new JsonTransformPolicyOptions { Set = new() { ["/seen"] = true } }), new PolicyCondition { Path = "/v", In = [1, "x"] });
            Map(app, "script", new ScriptPolicy(new ScriptPolicyOptions { Source = "(message) => message", Json = true }));
        });
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        _loggers.Dispose();
    }

    private static void Map(WebApplication app, string route, IMessageInterceptor policy, PolicyCondition? when = null) =>
        app.MapWebSocket("/" + route, ws =>
        {
            ws.UsePolicy(policy, when);
            ws.OnMessage((m, _) => m);
        });

    /// <summary>Every line the log policy wrote.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> LogLines { get; } = new();

    private sealed class CountingLoggerProvider(System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Counting(lines);

        public void Dispose()
        {
        }

        private sealed class Counting(System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue(formatter(state, exception));
        }
    }
}

/// <summary>
/// Every policy that reads JSON (but json-schema, tested through the gateway process), on documents holding values at
/// the extremes (numbers, strings, nestings, lone surrogates, BOMs, near-JSON): each message gets the policy's
/// documented outcome, nothing crashes the connection, and json-redact never lets the secret through.
/// </summary>
public class JsonPolicyExtremeValueTests(EveryJsonPolicyServer server) : IClassFixture<EveryJsonPolicyServer>
{
    private const string Secret = "s3cret";

    private static readonly string[] s_values =
    [
        "1e9999999", "1e-999999999", "-1e9999999", "1e4294967296", new string('9', 400), "-0", "0e0", "1.5e-9999999", "1e300",
        "\"" + new string('a', 100_000) + "\"", "\"\\udc00\"", "\"\\ud800\\udc00\"", "\"\uFEFF\"", "\"\\u0000\"", "\"x\"", "1",
        new string('[', 900) + "1" + new string(']', 900), "{\"type\":\"internal\"}", "NaN", "Infinity", "[1,]", "/* c */ 1", "\"\\ud800\"", "\"\\udc00 /* c */\"", "/* c */ \"\\udc00\"",
    ];

    private readonly EveryJsonPolicyServer _server = server;

    [Property(MaxTest = 200)]
    public void ExtremeValues_GetTheDocumentedOutcome_AndTheSecretNeverPassesTheRedaction(int seed)
    {
        var random = new Random(seed);
        var parts = Enumerable.Range(0, random.Next(1, 4)).Select(i => $"\"f{i}\":{s_values[random.Next(s_values.Length)]}").ToList();
        parts.Insert(random.Next(parts.Count + 1), $"\"password\":\"{Secret}\"");
        parts.Insert(random.Next(parts.Count + 1), $"\"v\":{s_values[random.Next(s_values.Length)]}");
        var body = "{" + string.Join(',', parts) + (random.Next(5) == 0 ? ",}" : "}");
        var shape = random.Next(6);
        var message = shape switch
        {
            0 => "\uFEFF" + body,
            1 => " \n" + body,
            2 => "[" + body + "]",
            3 => new string('[', 1001) + body + new string(']', 1001),
            4 => "// c\n /* d */" + body,
            _ => body,
        };

        _server.LogLines.Clear();
        foreach (var route in EveryJsonPolicyServer.Routes)
        {
            var received = Exchange(route, message);
            // Every route answers each message once (the echo or a policy's error frame), but json-redact, which drops
            // text it cannot redact (near-JSON no lenient reader can read, a lone surrogate it cannot write again), the
            // json-filter that drops near-JSON it cannot read, and script, which drops JSON deeper than Jint reads.
            var mayDrop = (route == "script" && !LenientlyReadable(message, maxDepth: 60)) || (route == "filter-strict" && !LenientlyReadable(message)) || (route == "redact" && (!LenientlyReadable(message) || HasLoneSurrogate(message)));
            Assert.True(received.Count == 1 || (mayDrop && received.Count == 0), $"{route}: {received.Count} frames for {Cut(message)}");
            foreach (var text in received)
            {
                // The echo (changed or not), or an error frame of the policy.
                Assert.True(!text.StartsWith("{\"error\"", StringComparison.Ordinal) || text.Contains("\"status\":403", StringComparison.Ordinal) || text.Contains("\"status\":429", StringComparison.Ordinal), $"{route}: {text[..Math.Min(200, text.Length)]}");
                // /password names the root object's member; in an array (shape 2) it is not the field to redact.
                if (route == "redact" && shape != 2)
                {
                    Assert.DoesNotContain(Secret, text, StringComparison.Ordinal);
                }
            }
        }

        // The log policy masks /password, also in near-JSON (comments, NaN), and logs no unparsable payload.
        if (shape != 2)
        {
            Assert.DoesNotContain(_server.LogLines, l => l.Contains(Secret, StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("{\"type\":\"internal\" /* a comment */}")]
    [InlineData("{\"type\":\"internal\",}")]
    [InlineData("\uFEFF{\"type\":\"internal\"}")]
    [InlineData(" \r\n\t[{\"a\":1},]")]
    public void Filter_ReadsCommentsTrailingCommasAndABom_AsALenientBackendDoes(string message)
    {
        var received = Assert.Single(Exchange("filter", message));
        if (message.TrimStart().StartsWith('['))
        {
            // An array has no /type: read, the condition does not hold, and the text goes on as it came.
            Assert.Equal(message, received);
            return;
        }

        Assert.Contains("\"status\":403", received, StringComparison.Ordinal);
    }

    [Fact]
    public void TransformAndWhen_ReadCommentsAndTrailingCommas_AndForwardPlainJson()
    {
        Assert.Equal("""{"v":1,"seen":true}""", Assert.Single(Exchange("transform", "{\"v\":1, /* c */}")));
        Assert.Equal("""{"v":1,"seen":true}""", Assert.Single(Exchange("when", "{\"v\":1,}")));
        Assert.Equal("{\"v\":2,}", Assert.Single(Exchange("when", "{\"v\":2,}")));
    }

    [Theory]
    [InlineData("log", "{\"password\":\"x\",\"f\":\"\\udc00\" /*c*/}")]
    [InlineData("log", "{\"password\":\"x\",\"\\udc00\":1 /*c*/}")]
    [InlineData("log", "{\"password\":\"x\",\"f\":\"\\udc00\"}")]
    [InlineData("transform", "{\"f\":\"\\udc00\" /*c*/}")]
    [InlineData("transform", "{\"\\ud800\":1,}")]
    [InlineData("transform", "{\"f\":\"\\udc00\"}")]
    [InlineData("transform", "{\"\\ud800\\ud800\\udc00\":1}")]
    [InlineData("when", "{\"v\":1,\"f\":[\"\\udc00\"]}")]
    [InlineData("when", "{\"v\":1,\"f\":\"\\udc00\",}")]
    [InlineData("rate-limit", "{\"v\":\"\\udc00\"}")]
    [InlineData("rate-limit", "{\"v\":\"a\\ud800b\"}")]
    [InlineData("filter", "{\"type\":\"\\udc00\"}")]
    [InlineData("filter", "{\"type\":\"\\udc00\",}")]
    [InlineData("when", "{\"v\":\"\\udc00\"}")]
    public void LoneSurrogates_PassUnchanged_AndFailNothing(string route, string message) =>
        Assert.Equal(message, Assert.Single(Exchange(route, message)));

    [Fact]
    public void Filter_UnparsableDrop_DropsNearJsonItCannotJudge_AndPassIsTheDefault()
    {
        const string Hidden = "{\"type\":\"internal\",\"n\":NaN}";
        Assert.Equal(Hidden, Assert.Single(Exchange("filter", Hidden)));
        Assert.Empty(Exchange("filter-strict", Hidden));
        Assert.Contains("\"status\":403", Assert.Single(Exchange("filter-strict", "{\"type\":\"internal\",}")), StringComparison.Ordinal);
        Assert.Equal("NaN", Assert.Single(Exchange("filter-strict", "NaN")));
    }

    [Theory]
    [InlineData("// a comment\n{\"password\":\"s3cret\"}")]
    [InlineData("/* a comment */{\"password\":\"s3cret\"}")]
    [InlineData("\uFEFF /* a */ // b\r\t/**/{\"password\":\"s3cret\"}")]
    [InlineData("// a\n/* \uFEFF */\uFEFF{\"password\":\"s3cret\"}")]
    [InlineData("/* a */ {\"password\":\"s3cret\",\"n\":NaN}")]
    public void Redact_ReadsPastLeadingComments(string message)
    {
        foreach (var text in Exchange("redact", message))
        {
            Assert.DoesNotContain("s3cret", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Filter_ReadsPastALeadingComment() =>
        Assert.Contains("\"status\":403", Assert.Single(Exchange("filter", "// c\n{\"type\":\"internal\"}")), StringComparison.Ordinal);

    [Theory]
    [InlineData("{\"\\udc00\":1,\"password\":\"s3cret\"}")]
    [InlineData("{\"\\udc00aa\":1,\"password\":\"s3cret\"}")] // as long as "password": compared, not skipped by length
    [InlineData("{\"v\":\"\\udc00\",\"password\":\"s3cret\"}")]
    [InlineData("{\"\\udc00aa\":1,\"password\":\"s3cret\",}")]
    public void Redact_LoneSurrogate_IsDropped_NotAFailure(string message)
    {
        Assert.Empty(Exchange("redact", message));
    }

    private static readonly System.Text.Json.JsonDocumentOptions s_lenient = new()
    {
        CommentHandling = System.Text.Json.JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        MaxDepth = 1000,
    };

    private static bool LenientlyReadable(string message, int maxDepth = 1000)
    {
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(message.TrimStart('\uFEFF'), s_lenient with { MaxDepth = maxDepth });
            return true;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    private static bool HasLoneSurrogate(string message) =>
        System.Text.RegularExpressions.Regex.IsMatch(message, @"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}", System.Text.RegularExpressions.RegexOptions.IgnoreCase);

    private static string Cut(string text) => text.Length <= 200 ? text : text[..200] + "…";

    /// <summary>
    /// Sends the message and a sentinel on a new connection; everything received before the sentinel's echo. Fails when
    /// the message failed the chain (event 200: an exception escaped a policy, and the message was lost).
    /// </summary>
    private List<string> Exchange(string route, string message)
    {
        var failuresBefore = Failures();
        var received = ExchangeFrames(route, message);
        var failure = _server.Server.Logs.Entries.Where(e => e.EventId.Id == 200).Skip(failuresBefore).FirstOrDefault();
        Assert.True(failure is null, $"{route}: the chain failed on {Cut(message)}: {failure?.Exception}");
        return received;
    }

    private int Failures() => _server.Server.Logs.Entries.Count(e => e.EventId.Id == 200);

    private List<string> ExchangeFrames(string route, string message)
    {
        return Task.Run(async () =>
        {
            using var client = await WebSocketClient.ConnectAsync(_server.Server.WebSocketUri("/" + route));
            await client.SendTextAsync(message);
            await client.SendTextAsync("""{"sentinel":1}""");
            var received = new List<string>();
            while (true)
            {
                var text = await client.ReceiveTextAsync();
                if (text.Contains("\"sentinel\":1", StringComparison.Ordinal))
                {
                    Assert.Equal(WebSocketState.Open, client.State);
                    return received;
                }

                received.Add(text);
            }
        }).GetAwaiter().GetResult();
    }
}
