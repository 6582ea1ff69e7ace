using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;
using Sluice.Policies;

namespace Sluice.Benchmarks;

/// <summary>
/// Per message, the 1 KiB JSON message of <see cref="PolicyChainBenchmarks"/> through a script policy: a no-op script
/// (<c>(data) =&gt; data</c>) against no policy at all, the script's fixed cost; and the same with <c>json: true</c>,
/// where the script gets the parsed object and its result is serialized again.
/// </summary>
[MemoryDiagnoser]
public class ScriptPolicyBenchmarks
{
    private MessageContext _context = null!;
    private MessageDelegate _empty = null!;
    private MessageDelegate _noop = null!;
    private MessageDelegate _noopJson = null!;
    private ScriptPolicy _noopPolicy = null!;
    private ScriptPolicy _noopJsonPolicy = null!;

    [GlobalSetup]
    public void Setup()
    {
        _noopPolicy = new ScriptPolicy(new ScriptPolicyOptions { Source = "(data) => data" });
        _noopJsonPolicy = new ScriptPolicy(new ScriptPolicyOptions { Source = "(data) => data", Json = true });
        _empty = PolicyChainBenchmarks.Build(_ => { });
        _noop = PolicyChainBenchmarks.Build(b => b.UsePolicy(_noopPolicy));
        _noopJson = PolicyChainBenchmarks.Build(b => b.UsePolicy(_noopJsonPolicy));

        // A no-op script reads nothing of the connection: an object without a socket will do.
        var connection = (WebSocketConnection)RuntimeHelpers.GetUninitializedObject(typeof(ProxyConnection));
        _context = new MessageContext(connection, MessageDirection.Inbound, new NullSink());
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _noopPolicy.Dispose();
        _noopJsonPolicy.Dispose();
    }

    [Benchmark(Baseline = true)]
    public WebSocketMessage NoPolicy() => Run(_empty);

    [Benchmark]
    public WebSocketMessage NoOpScript() => Run(_noop);

    [Benchmark]
    public WebSocketMessage NoOpScriptJson() => Run(_noopJson);

    private WebSocketMessage Run(MessageDelegate chain)
    {
        // A message fresh from the socket: its text is not decoded yet, so a script's decode is counted.
        _context.Reset(WebSocketMessage.FromText(PolicyChainBenchmarks.Payload.AsMemory()), 0);
        var pending = chain(_context);
        if (!pending.IsCompletedSuccessfully || _context.Outcome != MessageOutcome.Forwarded)
        {
            throw new InvalidOperationException($"the message was not forwarded: {_context.Outcome}");
        }

        var result = _context.Message;
        _context.Clear();
        return result;
    }

    private sealed class NullSink : MessageSink
    {
        public override ValueTask ForwardAsync(MessageContext context) => default;

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
        }
    }
}
