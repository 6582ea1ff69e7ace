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

/// <summary>
/// What a policy that reads JSON does with text that looks like a JSON object or array (after a BOM, whitespace and
/// comments it starts with <c>{</c> or <c>[</c>) but cannot be read even leniently: <c>NaN</c>, <c>Infinity</c>, over
/// 1,000 levels, broken, or a lone UTF-16 surrogate where the policy must write it again.
/// </summary>
public enum UnparsableJson
{
    /// <summary>The message is dropped (counted and logged): a lenient backend might read what the policy could not judge.</summary>
    Drop,

    /// <summary>The message passes unchanged, as other non-JSON text does.</summary>
    Pass,
}
