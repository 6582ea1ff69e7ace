namespace Sluice.Policies;

/// <summary>What a message policy does with a message that fails its check.</summary>
public enum PolicyAction
{
    /// <summary>The message is not forwarded; nobody is told.</summary>
    Drop,

    /// <summary>
    /// As <see cref="Drop"/>, and the source gets one error message:
    /// <c>{"error":{"policy":"NAME","status":STATUS,"message":"..."}}</c>.
    /// </summary>
    Reply,

    /// <summary>The connection closes (both legs in proxy mode) with the policy's close code.</summary>
    Close,
}
