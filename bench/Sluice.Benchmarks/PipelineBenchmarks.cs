using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.DependencyInjection;

namespace Sluice.Benchmarks;

/// <summary>
/// One message through 8 interceptors that only call next, inbound then outbound, in process with no socket:
/// what the pipeline itself costs per message. Target: under 100 ns and 0 bytes. With <see cref="ControlFramesOptedIn"/>
/// every interceptor also opts in to control frames: the data chain, and so its cost, must stay the same.
/// </summary>
[MemoryDiagnoser]
public class PipelineBenchmarks
{
    private MessagePipeline _pipeline = null!;
    private MessageContext _inbound = null!;
    private MessageContext _outbound = null!;
    private WebSocketMessage _message = null!;

    [Params(0, 8)]
    public int Interceptors { get; set; }

    [Params(false, true)]
    public bool ControlFramesOptedIn { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var builder = new WebSocketPipelineBuilder();
        for (var i = 0; i < Interceptors; i++)
        {
            var registration = builder.Use(new PassThrough());
            if (ControlFramesOptedIn)
            {
                registration.WithControlFrames(ControlFrames.All);
            }
        }

        using var services = new ServiceCollection().BuildServiceProvider();
        _pipeline = MessagePipeline.Build(builder.Interceptors, services);
        var sink = new CountingSink();
        // The interceptors never touch the connection; the contexts are reused per message as the receive loops do.
        _inbound = new MessageContext(null!, MessageDirection.Inbound, sink);
        _outbound = new MessageContext(null!, MessageDirection.Outbound, sink);
        _message = WebSocketMessage.FromText("""{"type":"chat","text":"hello"}""");
    }

    [Benchmark]
    public ValueTask InboundThenOutbound()
    {
        _inbound.Reset(_message, 0);
        var inbound = _pipeline.Inbound(_inbound);
        _outbound.Reset(_message, 0);
        var outbound = _pipeline.Outbound(_outbound);
        return inbound.IsCompletedSuccessfully && outbound.IsCompletedSuccessfully ? default : throw new InvalidOperationException("a no-op chain went async");
    }

    private sealed class PassThrough : IMessageInterceptor
    {
        public ValueTask InboundAsync(MessageContext context, MessageDelegate next) => next(context);

        public ValueTask OutboundAsync(MessageContext context, MessageDelegate next) => next(context);
    }

    private sealed class CountingSink : MessageSink
    {
        public long Forwarded { get; private set; }

        public override ValueTask ForwardAsync(MessageContext context)
        {
            Forwarded++;
            return default;
        }

        public override void Reply(MessageContext context, WebSocketMessage message)
        {
        }
    }
}
