using Sluice.Protocol;

namespace Sluice.Topics;

/// <summary>
/// One subscriber catching up with a topic's history: from the moment it is registered with the bus (before the
/// subscriber joins the topic), live messages are held here instead of sent; <see cref="Complete"/> then sends
/// the answer, the history read after the subscribe, and the held messages, skipping any offset already sent, and
/// switches to live. Every message published after the subscribe is in the read or held (or both), so nothing
/// is missed and nothing is sent twice.
/// </summary>
internal sealed class TopicRecovery(WebSocketConnection connection, int capacity)
{
    private List<TopicFrame>? _held = [];
    private long _lastSent;

    public WebSocketConnection Connection => connection;

    /// <summary>
    /// A live message for the subscriber: held while recovering, sent once live unless its offset was sent. Returns
    /// true once a live message newer than everything sent has passed: messages arrive in offset order, so none can
    /// be a duplicate any more and the bus forgets this recovery. (The history read may be ahead of the live
    /// messages this node has received, which is why live offsets are still checked after the switch.)
    /// </summary>
    public bool Offer(TopicFrame frame)
    {
        lock (this)
        {
            if (_held is null)
            {
                var fresh = frame.Offset > _lastSent;
                Send(frame, replay: false);
                return fresh;
            }

            if (_held.Count >= capacity)
            {
                // Held messages count against the subscriber's queue, like a slow subscriber's.
                _held = [];
                connection.BeginClose(WebSocketProtocol.TryAgainLater, "subscriber too slow", ConnectionCloseInitiator.Server);
                return false;
            }

            _held.Add(frame);
            return false;
        }
    }

    /// <summary>Sends <paramref name="answer"/>, then <paramref name="replay"/> and the held messages in order, and goes live.</summary>
    public void Complete(TopicFrame answer, IEnumerable<TopicFrame> replay, long after)
    {
        lock (this)
        {
            _lastSent = Math.Max(_lastSent, after);
            connection.DeliverTopic(answer, replay: true);
            foreach (var frame in replay)
            {
                Send(frame, replay: true);
            }

            foreach (var frame in _held ?? [])
            {
                Send(frame, replay: true);
            }

            _held = null;
        }
    }

    private void Send(TopicFrame frame, bool replay)
    {
        if (frame.Offset != 0)
        {
            if (frame.Offset <= _lastSent)
            {
                return;
            }

            _lastSent = frame.Offset;
        }

        connection.DeliverTopic(frame, replay);
    }
}
