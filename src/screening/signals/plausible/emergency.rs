//! Numbers that reach emergency and public services: a call never comes *from* one, so one as
//! the caller id is spoofed (the Do-Not-Originate rules of the FCC, Ofcom, the Bundesnetzagentur
//! and ACMA all name them).
//!
//! Two tables: the services of the six countries the agent is deployed in, with what each is,
//! from the regulators' own lists; and every region's emergency numbers as libphonenumber's
//! short-number metadata (ShortNumberMetadata.xml, release 9.0.33, which the `phonenumber` crate
//! ships but does not load) describes them, expanded to the digits (`x` is any digit). Knows
//! nothing of calls or dialling plans: it answers for digits and regions.

/// A service number of one of the six countries.
pub struct Service {
    /// ISO 3166 alpha-2.
    pub region: &'static str,
    /// The digits as dialled there; `x` is any digit.
    pub code: &'static str,
    /// What it reaches, for the reason.
    pub what: &'static str,
}

const fn s(region: &'static str, code: &'static str, what: &'static str) -> Service {
    Service { region, code, what }
}

/// Sources: FCC N11 assignments and the 988 Lifeline order (US), CRTC N11 (CA), Ofcom's
/// National Telephone Numbering Plan (GB: 999, 112, 101, 105, 111, 116xxx, 118xxx), the
/// Bundesnetzagentur's Nummernplan (DE: 110, 112, 115, 116xxx, 118xx), CNMC's short-number plan
/// (ES), ACMA's Numbering Plan 2015 (AU).
pub const SERVICES: &[Service] = &[
    s("US", "911", "an emergency number"),
    s("US", "112", "an emergency number"),
    s("US", "988", "the Suicide & Crisis Lifeline"),
    s("US", "211", "a community services line"),
    s("US", "311", "a municipal services line"),
    s("US", "411", "directory assistance"),
    s("US", "511", "a traffic information line"),
    s("US", "611", "a carrier repair line"),
    s("US", "711", "the relay service for deaf callers"),
    s("US", "811", "the call-before-you-dig line"),
    s("CA", "911", "an emergency number"),
    s("CA", "112", "an emergency number"),
    s("CA", "988", "the Suicide Crisis Helpline"),
    s("CA", "211", "a community services line"),
    s("CA", "311", "a municipal services line"),
    s("CA", "411", "directory assistance"),
    s("CA", "511", "a traffic information line"),
    s("CA", "611", "a carrier repair line"),
    s("CA", "711", "the relay service for deaf callers"),
    s("CA", "811", "a health information line"),
    s("GB", "999", "an emergency number"),
    s("GB", "112", "an emergency number"),
    s("GB", "101", "the police non-emergency number"),
    s("GB", "105", "the power cut line"),
    s("GB", "111", "the NHS urgent care line"),
    s("GB", "116xxx", "a harmonised European 116 service number"),
    s("GB", "118xxx", "a directory enquiry service"),
    s("DE", "110", "the police emergency number"),
    s("DE", "112", "an emergency number"),
    s("DE", "115", "the public administration line"),
    s("DE", "116xxx", "a harmonised European 116 service number"),
    s("DE", "118xx", "a directory enquiry service"),
    s("ES", "112", "an emergency number"),
    s("ES", "091", "the Policía Nacional emergency number"),
    s("ES", "092", "the local police emergency number"),
    s("ES", "062", "the Guardia Civil emergency number"),
    s("ES", "061", "the medical emergency number"),
    s("ES", "080", "the fire brigade emergency number"),
    s("ES", "085", "the fire brigade emergency number"),
    s("ES", "088", "a regional police emergency number"),
    s("ES", "016", "the gender violence helpline"),
    s("ES", "024", "the suicide prevention line"),
    s("ES", "116xxx", "a harmonised European 116 service number"),
    s("AU", "000", "an emergency number"),
    s("AU", "112", "an emergency number"),
    s("AU", "106", "the text emergency relay number"),
];

/// Every region's emergency numbers (code, regions), from libphonenumber's short-number
/// metadata.
pub const WORLD: &[(&str, &str)] = &[
    ("01", "LT LV RU TM UZ"),
    ("02", "LT LV RU TM UZ"),
    ("03", "LT LV RU TM UZ"),
    ("13", "CM"),
    ("14", "DZ"),
    ("15", "EH FR GF GP MA MC MF ML MQ NC NE PF PK PM RE WF YT"),
    ("16", "GM NC PK"),
    ("17", "BF CM DJ DZ FR GF GM GP KM MC MF MG ML MQ MR NC NE PF PM RE SN TD WF"),
    ("18", "BF BL DJ FR GA GF GM GP KM MC MF MG ML MQ MR NC NE PF PM RE SN TD WF"),
    ("19", "EH MA"),
    ("90", "BZ"),
    ("91", "ET"),
    ("92", "ET RS"),
    ("93", "ET HR RS"),
    ("94", "HR RS"),
    ("000", "AU CC CX PG"),
    ("001", "UZ"),
    ("002", "UZ"),
    ("003", "UZ"),
    ("011", "GE LT"),
    ("019", "SL"),
    ("022", "GE LT"),
    ("033", "GE LT"),
    ("050", "UZ"),
    ("060", "MX"),
    ("065", "MX"),
    ("066", "MX"),
    ("068", "MX"),
    ("080", "MX"),
    ("085", "ES"),
    ("088", "ES"),
    ("100", "AF AR AW BD BE GR IL IN IQ MN NP PS"),
    ("101", "AM AR AZ BD BE BY EC IL IN KG KZ LT MN NP PS RU TJ UA"),
    ("102", "AF AM AZ BD BY EC IL IN KG KZ LT MN MV NP PS RU TJ UA"),
    ("103", "AM AZ BY KG KZ LT MN NP RU TJ UA"),
    ("104", "CU HU IQ"),
    ("105", "CU HU MN PE"),
    ("106", "AU CU"),
    ("107", "AR HU"),
    ("108", "IN"),
    ("110", "AD BO BT CI CN DE EE GT ID IR JM JP LK LV NO NR PG SJ SY TR TW TZ"),
    ("111", "CI GE NR NZ PG RW TZ"),
    ("112", "AD AE AL AO AT AU AX AZ BE BG BI BJ BQ BR BT BY CA CC CH CO CR CW CX CY CZ DE DK DO DZ EC EE ER ES FI FO FR GB GE GG GI GL GR HK HR HU ID IE IL IN IR IS IT JE JM JO KE KP KR KW KZ LB LI LK LS LT LU LV MC MD ME MK MQ MT MY NL NO NP NR PH PK PL PT RE RO RS RU RW SA SE SI SJ SK ST SY TJ TL TR TW TZ UA US VA VE VU XK YT ZA ZM ZW"),
    ("113", "AO BI BT CD CM ER GE GW ID IT LU LV NO SI SJ SM SY VA VN"),
    ("114", "BJ CD DK ER FO HT KE MU TZ VN"),
    ("115", "AO IQ IR IT LS MU NI PK PT SM SR TL TZ VA VN"),
    ("116", "AD BJ ER GM LK PE"),
    ("117", "BI BJ CF CG CH CM GM GW KH LI LS MG MZ PE PH TG"),
    ("118", "AD BJ BO CD CF CG CH GM GW HT ID IT KH LI LK MG MV NE NI SM TG VA"),
    ("119", "AF BO CN CO ID JM JP KH KP KR LK MV MZ TW"),
    ("120", "CN GT NI"),
    ("122", "AT BA EG GE IQ ME"),
    ("123", "BA CO EG GT ME"),
    ("124", "BA ME"),
    ("125", "IR"),
    ("127", "AL"),
    ("128", "AL BR NI PY UY"),
    ("129", "AL"),
    ("130", "CV"),
    ("131", "CL CV"),
    ("132", "CL CO CV"),
    ("133", "AT CL"),
    ("140", "LB"),
    ("144", "AT CH LI"),
    ("150", "BG CZ SK"),
    ("151", "CZ"),
    ("152", "CZ"),
    ("153", "CZ"),
    ("154", "CZ"),
    ("155", "CZ SK TR"),
    ("156", "CO CZ"),
    ("157", "CZ"),
    ("158", "CZ SK"),
    ("159", "CZ"),
    ("160", "BG"),
    ("166", "BG GR"),
    ("170", "CI"),
    ("171", "TG VE"),
    ("172", "TG"),
    ("175", "LB"),
    ("177", "CD EH MA TG"),
    ("180", "CI EG"),
    ("188", "CD"),
    ("190", "BR GI LA LY TN"),
    ("191", "GH JO LA LY TH YE"),
    ("192", "BR GH HR JO KI MK XK"),
    ("193", "BR GH HR KI LY MK XK"),
    ("194", "HR KI MK XK YE"),
    ("195", "KI LA YE"),
    ("197", "JO MZ TN"),
    ("198", "MZ TN"),
    ("199", "BD BH CY GI GR HN MM MW NG TH YE"),
    ("211", "BB"),
    ("311", "BB"),
    ("333", "DM KN"),
    ("355", "LR"),
    ("511", "BB"),
    ("555", "SO"),
    ("666", "KH"),
    ("819", "KP"),
    ("888", "SO"),
    ("901", "MD"),
    ("902", "MD"),
    ("903", "MD"),
    ("911", "AC AG AI AR AS AW BB BM BQ BR BS BW BZ CA CL CR CW DM DO EC ET FJ FM GD GU GY IR JM JO KN KY LC LR MH MP MS MX NF NL PA PH PR PW PY SA SH SV TC TO TV US UY VC VE VG VI WS"),
    ("912", "GY"),
    ("913", "GY SV"),
    ("917", "FJ"),
    ("919", "BS SX"),
    ("922", "TO"),
    ("933", "TO"),
    ("939", "ET"),
    ("955", "NF"),
    ("977", "NF"),
    ("990", "BZ TT"),
    ("991", "BN ET ZM"),
    ("992", "HK KI"),
    ("993", "BN KI SG ZM ZW"),
    ("994", "KI WS ZW"),
    ("995", "BN MU SG WS ZW"),
    ("996", "CK WS"),
    ("997", "AE BW ET MW PL SA"),
    ("998", "AE BW CK MW PL"),
    ("999", "AC AE AG BD BH BW CK DM FK GB GG GH HK IE IM JE KE KN LB LC MO MS MU MW MY NU PL QA SA SB SC SD SG SH SL SO SS SZ TC TO TT TZ UG VC VG WS ZM ZW"),
    ("1122", "PK"),
    ("1220", "CF"),
    ("1298", "IN"),
    ("13xx", "GA"),
    ("1444", "OM"),
    ("1669", "TH"),
    ("1730", "GA"),
    ("2611", "IN"),
    ("9999", "OM"),
    ("10111", "NA ZA"),
    ("10177", "ZA"),
    ("90000", "SE"),
    ("124422", "ER"),
    ("127799", "ER"),
    ("201606", "ER"),
    ("201917", "ER"),
    ("202099", "ER"),
    ("202914", "ER"),
    ("320221", "FM"),
    ("723141", "NE"),
];

/// Do these digits match a code with `x` wildcards?
fn matches(code: &str, digits: &[u8]) -> bool {
    code.len() == digits.len() && code.bytes().zip(digits).all(|(c, &d)| c == b'x' || c == d)
}

/// Longest code in either table: longer digits are never checked.
pub const MAX_LEN: usize = 6;

/// What the digits reach, if they are a service or emergency number: among `regions` when
/// given (the regions of the caller's country code), else anywhere. The answer reads "is
/// <what> (<regions>)".
pub fn reached(digits: &[u8], regions: Option<&[String]>) -> Option<String> {
    if digits.is_empty() || digits.len() > MAX_LEN {
        return None;
    }
    let wanted = |r: &str| regions.map_or(true, |rs| rs.iter().any(|x| x == r));
    let services: Vec<&Service> = SERVICES
        .iter()
        .filter(|s| wanted(s.region) && matches(s.code, digits))
        .collect();
    if let Some(first) = services.first() {
        let mut places: Vec<&str> = services.iter().map(|s| s.region).collect();
        places.dedup();
        return Some(format!("{} ({})", first.what, places.join(", ")));
    }
    let (_, places) = WORLD
        .iter()
        .find(|(code, places)| matches(code, digits) && places.split(' ').any(wanted))?;
    let places: Vec<&str> = places.split(' ').filter(|r| wanted(r)).collect();
    let shown = if places.len() > 4 {
        format!("{} and {} more", places[..4].join(", "), places.len() - 4)
    } else {
        places.join(", ")
    };
    Some(format!("an emergency number ({shown})"))
}
