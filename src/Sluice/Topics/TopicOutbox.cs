using System.Collections.Concurrent;
using System.Net.WebSockets;
using Sluice.Diagnostics;
using Sluice.Protocol;

namespace Sluice.Topics;

/// <summary>
/// One subscriber's queue of published messages. Publishers only enqueue and, if the queue was idle, start
/// draining it; the drain writes to the subscriber's socket and waits for it, so a slow subscriber holds up
/// nobody but itself, and its queue is bounded by <see cref="TopicOptions.SubscriberQueueCapacity"/>.
/// </summary>
internal sealed class TopicOutbox(WebSocketConnection connection, TopicBus bus)
{
    // Frames per write: enough to coalesce a burst, few enough to keep one subscriber's write buffer small.
    private const int BatchFrames = 64;

    private readonly ConcurrentQueue<TopicFrame> _queue = new();
    private int _count;
    private int _draining;

    /// <param name="frame">The frame.</param>
    /// <param name="replay">A replay of history the client asked for: bounded by the history's size, not the queue's capacity.</param>
    public void Enqueue(TopicFrame frame, bool replay = false)
    {
        var options = bus.Options;
        if (Interlocked.Increment(ref _count) > options.SubscriberQueueCapacity && !replay)
        {
            switch (options.SlowSubscriberMode)
            {
                case SlowSubscriberMode.DropNewest:
                    Interlocked.Decrement(ref _count);
                    bus.Metrics.RecordDropped("drop_newest");
                    return;
                case SlowSubscriberMode.DropOldest:
                    if (_queue.TryDequeue(out _))
                    {
                        Interlocked.Decrement(ref _count);
                    }

                    bus.Metrics.RecordDropped("drop_oldest");
                    break;
                default:
                    Interlocked.Decrement(ref _count);
                    bus.Metrics.RecordDropped("closed");
                    connection.BeginClose(WebSocketProtocol.TryAgainLater, "subscriber too slow", ConnectionCloseInitiator.Server);
                    return;
            }
        }

        _queue.Enqueue(frame);
        if (Interlocked.CompareExchange(ref _draining, 1, 0) == 0)
        {
            _ = DrainAsync();
        }
    }

    public void Clear()
    {
        while (_queue.TryDequeue(out _))
        {
            Interlocked.Decrement(ref _count);
        }
    }

    // A Task, not a ValueTask: nobody awaits the drain, and a drain that completes synchronously (the usual
    // case: the socket takes the bytes at once) returns a cached task and allocates nothing.
    private async Task DrainAsync()
    {
        try
        {
            while (true)
            {
                var leg = connection.ClientLeg;
                var runChain = connection.Route.Pipeline.HasOutboundInterceptors;
                var written = 0;
                while (written < BatchFrames && _queue.TryDequeue(out var frame))
                {
                    Interlocked.Decrement(ref _count);
                    if (connection.IsClosing)
                    {
                        continue;
                    }

                    if (runChain)
                    {
                        await connection.SendThroughOutboundAsync(frame.Message);
                    }
                    else if (leg.SendFramed(frame.Bytes, frame.HeaderLength, frame.Message.Type))
                    {
                        connection.CountOutbound(frame.Bytes.Length - frame.HeaderLength);
                    }

                    written++;
                }

                if (written > 0)
                {
                    await leg.FlushAsync();
                }

                Volatile.Write(ref _draining, 0);
                if (_queue.IsEmpty || Interlocked.CompareExchange(ref _draining, 1, 0) != 0)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (WebSocketConnection.IsTransportFailure(ex) || ex is OperationCanceledException)
        {
            // The subscriber is gone; its receive loop ends the connection, which clears this queue.
            Clear();
            Volatile.Write(ref _draining, 0);
        }
    }
}
