namespace Sluice.Topics;

/// <summary>What a subscribe with a limit did.</summary>
internal enum SubscribeResult
{
    Subscribed,
    AlreadySubscribed,
    OverLimit,
    Closing,
}
