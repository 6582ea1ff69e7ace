using System.Diagnostics;
using System.Net.WebSockets;
using Sluice.Protocol;

namespace Sluice;

/// <summary>
/// The state of the streamed message a pump is relaying (<see cref="WebSocketEndpointOptions.Streaming"/>): whether
/// any of it went on, whether the rest is dropped, and whether the pump holds the outbound gate until its end.
/// </summary>
internal sealed class FragmentRelay
{
    /// <summary>A fragment of the current message has been written to the other leg.</summary>
    public bool Started;

    /// <summary>The current message was dropped before any of it went on: its other fragments are discarded.</summary>
    public bool Skipping;

    /// <summary>The outbound pump holds the outbound gate from the first fragment to the last.</summary>
    public bool HoldsGate;

    /// <summary>The fragment running now ends its message.</summary>
    public bool Final;
}

/// <summary>
/// Streamed messages: a leg hands out a large binary message as pieces (<see cref="LegFrame.IsFragment"/>); each runs
/// through the direction's fragment chain (<see cref="MessagePipeline.InboundFragments"/>) and its sink writes it to
/// the other leg as one fragment of one fragmented message, so that nothing holds the message whole.
/// </summary>
public abstract partial class WebSocketConnection
{
    /// <summary>
    /// Runs one fragment through its chain. Outbound (from the backend), the pump takes the outbound gate at the first
    /// fragment and keeps it until the last, so that no app send, topic message or reply runs the outbound chain, or
    /// reaches the client, in the middle of the message ("one outbound chain at a time"); inbound, the backend leg's
    /// writer holds back anything else queued on it until the last fragment.
    /// </summary>
    private async ValueTask RelayFragmentAsync(FragmentRelay relay, LegFrame frame, MessageContext? inbound, MessageContextScope.Holder holder)
    {
        if (frame.Offset == 0)
        {
            relay.Started = false;
            relay.Skipping = false;
        }

        if (inbound is not null)
        {
            CountInboundFragment(frame.Payload.Length, first: frame.Offset == 0);
        }

        if (relay.Skipping)
        {
            return;
        }

        MessageContext context;
        if (inbound is null)
        {
            if (!relay.HoldsGate)
            {
                if (!_sendGate.Wait(0, CancellationToken.None))
                {
                    await _sendGate.WaitAsync(_abort.Token);
                }

                relay.HoldsGate = true;
                _streamHoldsOutboundGate = true;
            }

            context = _outbound ??= new MessageContext(this, MessageDirection.Outbound, _outboundSink);
        }
        else
        {
            context = inbound;
        }

        try
        {
            relay.Final = frame.IsFinal;
            context.Reset(WebSocketMessage.BorrowFragment(frame.Type, frame.Payload, frame.Offset, frame.IsFinal), Stopwatch.GetTimestamp());
            context.Fragment = relay;
            holder.Context = context;
            var pipeline = Route.Pipeline;
            var pending = Route.RunChainAsync(inbound is null ? pipeline.OutboundFragments : pipeline.InboundFragments, context);
            if (!pending.IsCompletedSuccessfully)
            {
                await pending;
            }

            if (context.Outcome == MessageOutcome.Forwarded)
            {
                // In host mode the handler has it now (a leg sink marked it already when it wrote it).
                relay.Started = true;
            }
            else
            {
                if (relay.Started)
                {
                    // Part of the message is already on the other side and cannot be taken back: a message cut short
                    // would reach the peer as a different message, so the connection ends instead.
                    BeginClose(WebSocketCloseStatus.PolicyViolation, "a streamed message was stopped mid-way", ConnectionCloseInitiator.Server);
                }
                else
                {
                    relay.Skipping = !frame.IsFinal;
                }
            }
        }
        finally
        {
            holder.Context = null;
            context.Fragment = null;
            context.Clear();
            if (frame.IsFinal || relay.Skipping)
            {
                ReleaseStreamGate(relay);
            }
        }
    }

    /// <summary>Writes a fragment that passed its chain to the other leg, opening the fragmented message there first.</summary>
    private void WriteFragment(WebSocketLeg leg, FragmentRelay relay, WebSocketMessage message)
    {
        var first = !relay.Started;
        relay.Started = true;
        if (leg.SendFragment(MessageType.Binary, first, relay.Final, message.Payload.Span) && ReferenceEquals(leg, _client))
        {
            CountOutboundFragment(message.Length, first);
        }
    }

    /// <summary>Counts a fragment from the client: its bytes, and its message once, at the first fragment.</summary>
    private void CountInboundFragment(int bytes, bool first)
    {
        if (first)
        {
            Interlocked.Increment(ref _inboundMessages);
        }

        Interlocked.Add(ref _inboundBytes, bytes);
        Volatile.Write(ref _lastInboundTicks, Route.Time.GetTimestamp());
    }

    /// <summary>Counts a fragment sent to the client: its bytes, and its message once, at the first fragment.</summary>
    private void CountOutboundFragment(int bytes, bool first)
    {
        if (first)
        {
            Interlocked.Increment(ref _outboundMessages);
        }

        Interlocked.Add(ref _outboundBytes, bytes);
        Volatile.Write(ref _lastOutboundTicks, Route.Time.GetTimestamp());
    }

    private void ReleaseStreamGate(FragmentRelay? relay)
    {
        if (relay is { HoldsGate: true })
        {
            relay.HoldsGate = false;
            _streamHoldsOutboundGate = false;
            _sendGate.Release();
        }
    }
}
