//! The labelled traffic generator: a day of calls for one country, compressed into minutes, each
//! call labelled scam or legitimate and by class. Built from public facts (each country's
//! numbering plan, emergency numbers, published inbound-only numbers, the brands scammers
//! imitate and the patterns fraud desks document), with a fixed seed, so two runs play the same
//! calls.
//!
//! Knows nothing of the agent: it never reads the agent's lists or brands, so the evaluation
//! cannot be tuned by editing the generator and the agent together. The only thing the two share
//! is the consortium blocklist the generator writes, which a carrier would receive from its
//! partners.

use fastrand::Rng;

/// Scam or legitimate: the truth the evaluation scores against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    Scam,
    Legit,
}

/// The classes of traffic, scam first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A number on the consortium blocklist.
    Listed,
    /// An unlisted number in the same 100- or 1000-block as a listed campaign's numbers.
    Rotated,
    /// The callee's own leading digits with the last four changed.
    NeighbourSpoof,
    /// The callee's own number as the caller id.
    OwnNumber,
    /// A display name claiming a brand (bank, tech, tax office, police ...), often misspelt.
    Brand,
    /// A published inbound-only number (a support line, a tax office) as the caller id.
    DnoSpoof,
    /// Emergency numbers, short codes, wrong lengths and unallocated ranges as the caller id.
    InvalidId,
    /// One ring and cut, from one number, to many callees.
    Wangiri,
    /// A burst from one number: many callees, few answers, short calls.
    Robocall,
    /// A scam number whose callees answer 607 Unwanted.
    Reported,
    /// People calling people.
    Ordinary,
    /// Genuine calls between numbers that share all but the last digits.
    Neighbour,
    /// Businesses calling customers, from their own numbers and with their names.
    Business,
    /// Calls from abroad through the international gateway.
    International,
    /// Legitimate high-volume senders: an appointment reminder line, a pharmacy, a school.
    HighVolume,
    /// People and shops whose names contain a brand word.
    InnocentName,
    /// Genuine customers of the same provider, whose numbers sit in a scam campaign's
    /// 1000-block (outside the 100-blocks the campaign uses): what block reputation costs.
    BlockNeighbour,
    /// A brand calling from a number it publishes as its own outbound number.
    BrandGenuine,
    /// Callers who withhold their number.
    Withheld,
    /// Calls to emergency numbers, some from listed callers: they must always pass.
    Emergency,
}

impl Class {
    pub const ALL: [Class; 20] = [
        Class::Listed,
        Class::Rotated,
        Class::NeighbourSpoof,
        Class::OwnNumber,
        Class::Brand,
        Class::DnoSpoof,
        Class::InvalidId,
        Class::Wangiri,
        Class::Robocall,
        Class::Reported,
        Class::Ordinary,
        Class::Neighbour,
        Class::Business,
        Class::International,
        Class::HighVolume,
        Class::InnocentName,
        Class::BlockNeighbour,
        Class::BrandGenuine,
        Class::Withheld,
        Class::Emergency,
    ];

    pub fn label(self) -> Label {
        if self < Class::Ordinary {
            Label::Scam
        } else {
            Label::Legit
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Listed => "listed",
            Class::Rotated => "rotated-in-block",
            Class::NeighbourSpoof => "neighbour-spoof",
            Class::OwnNumber => "own-number",
            Class::Brand => "brand-impersonation",
            Class::DnoSpoof => "dno-spoof",
            Class::InvalidId => "invalid-id",
            Class::Wangiri => "wangiri",
            Class::Robocall => "robocall-burst",
            Class::Reported => "reported-607",
            Class::Ordinary => "ordinary",
            Class::Neighbour => "genuine-neighbour",
            Class::Business => "business",
            Class::International => "international",
            Class::HighVolume => "high-volume-sender",
            Class::InnocentName => "innocent-brand-word",
            Class::BlockNeighbour => "customer-in-scam-block",
            Class::BrandGenuine => "brand-own-number",
            Class::Withheld => "withheld",
            Class::Emergency => "to-emergency",
        }
    }
}

/// The six victim countries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Country {
    US,
    CA,
    GB,
    DE,
    ES,
    AU,
}

impl Country {
    pub const ALL: [Country; 6] = [
        Country::US,
        Country::CA,
        Country::GB,
        Country::DE,
        Country::ES,
        Country::AU,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Country::US => "US",
            Country::CA => "CA",
            Country::GB => "GB",
            Country::DE => "DE",
            Country::ES => "ES",
            Country::AU => "AU",
        }
    }

    pub fn parse(s: &str) -> Option<Country> {
        Country::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(s))
    }

    /// Calls in this country carry STIR/SHAKEN attestations (FCC and CRTC mandates).
    pub fn signs_calls(self) -> bool {
        matches!(self, Country::US | Country::CA)
    }

    fn cc(self) -> &'static str {
        match self {
            Country::US | Country::CA => "1",
            Country::GB => "44",
            Country::DE => "49",
            Country::ES => "34",
            Country::AU => "61",
        }
    }

    /// How a subscriber writes the number nationally (trunk prefix), for calls whose caller id
    /// arrives in national format.
    fn national(self, e164: &str) -> String {
        let nsn = &e164[1 + self.cc().len()..];
        match self {
            Country::US | Country::CA => nsn.to_string(),
            Country::ES => nsn.to_string(),
            _ => format!("0{nsn}"),
        }
    }

    fn emergency(self) -> &'static [&'static str] {
        match self {
            Country::US | Country::CA => &["911"],
            Country::GB => &["999", "112"],
            Country::DE => &["110", "112"],
            Country::ES => &["112", "091"],
            Country::AU => &["000", "112"],
        }
    }
}

/// Which way the call enters the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The carrier's own core: trusted, STIR-capable where the country signs calls.
    Core,
    /// An older interconnect (TDM gateway) that passes no attestation; trusted for the caller id.
    Legacy,
    /// The international gateway.
    Gateway,
}

/// What the callee does when the call reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callee {
    /// Answers after `ring_ms`, talks `talk_ms`, then the caller hangs up.
    Answers { ring_ms: u64, talk_ms: u64 },
    /// Rings until the caller gives up after `cancel_ms`.
    NoAnswer { cancel_ms: u64 },
    /// Refuses the call as unwanted (607) after `ring_ms`.
    Unwanted { ring_ms: u64 },
}

/// One labelled call.
#[derive(Debug, Clone)]
pub struct Call {
    pub class: Class,
    pub country: Country,
    /// Milliseconds after the start of the run.
    pub at_ms: u64,
    /// The caller id as carried (E.164, national format or a short code).
    pub caller: String,
    pub callee: String,
    pub display: Option<String>,
    pub withheld: bool,
    pub ingress: Ingress,
    /// `verstat=TN-Validation-Passed` (an A attestation verified upstream).
    pub attested: bool,
    pub callee_does: Callee,
}

/// An entry of the consortium blocklist.
#[derive(Debug, Clone)]
pub struct Listed {
    pub number: String,
    pub block: bool,
    pub campaign: String,
}

/// One country's day: its calls in time order and the consortium list the carrier received.
pub struct Day {
    pub country: Country,
    pub calls: Vec<Call>,
    pub consortium: Vec<Listed>,
    pub duration_ms: u64,
}

/// How much traffic: `scale` multiplies every class's count; `duration_s` is the compressed day.
/// Rates that signals measure (velocity, wangiri, a reminder line's calls per minute) are kept at
/// their real values whatever the scale, so a short run plays fewer of them, not faster ones.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub scale: f64,
    pub duration_s: u64,
    pub seed: u64,
    /// Multiplies every ring, talk and give-up time. 1 in the evaluation; the smoke test in the
    /// suite shortens calls with it, which changes what velocity and wangiri see, so its
    /// figures mean nothing.
    pub time_scale: f64,
}

fn n(shape: &Shape, base: usize) -> usize {
    ((base as f64 * shape.scale).round() as usize).max(1)
}

struct Gen<'a> {
    rng: Rng,
    country: Country,
    shape: &'a Shape,
    dur_ms: u64,
    calls: Vec<Call>,
}

/// A number of `country` in a real, allocated range (never a fiction range).
fn subscriber(rng: &mut Rng, country: Country) -> String {
    let d = |rng: &mut Rng, k: usize| -> String {
        (0..k).map(|_| char::from(b'0' + rng.u8(0..10))).collect()
    };
    match country {
        Country::US | Country::CA => {
            let npas: &[&str] = if country == Country::US {
                &[
                    "201", "202", "206", "212", "213", "303", "305", "312", "404", "415", "512",
                    "602", "617", "702", "713", "718", "805", "917", "972", "919",
                ]
            } else {
                &[
                    "416", "514", "604", "613", "403", "780", "905", "647", "438", "250", "902",
                    "204", "306",
                ]
            };
            let npa = npas[rng.usize(..npas.len())];
            // Central office codes: NXX with N in 2-9, never N11 or 555.
            let nxx = loop {
                let x = format!("{}{}", rng.u8(2..10), d(rng, 2));
                if !x.ends_with("11") && x != "555" && x != "950" && x != "958" && x != "959" {
                    break x;
                }
            };
            format!("+1{npa}{nxx}{}", d(rng, 4))
        }
        Country::GB => match rng.u8(0..5) {
            // London 020 3xxx/7xxx/8xxx, avoiding Ofcom's 020 7946 0xxx drama range.
            0 => loop {
                let s = format!("+4420{}{}", ["3", "7", "8"][rng.usize(..3)], d(rng, 7));
                if !s.starts_with("+442079460") {
                    break s;
                }
            },
            1 => format!(
                "+44{}{}{}",
                ["121", "161", "113", "131", "141"][rng.usize(..5)],
                rng.u8(2..4),
                d(rng, 6)
            ),
            _ => loop {
                let s = format!(
                    "+447{}{}",
                    ["4", "5", "7", "8", "9"][rng.usize(..5)],
                    d(rng, 8)
                );
                if !s.starts_with("+447700900") {
                    break s;
                }
            },
        },
        Country::DE => match rng.u8(0..5) {
            0 => format!("+4930{}{}", rng.u8(2..10), d(rng, 7)),
            1 => format!("+4989{}{}", rng.u8(2..10), d(rng, 7)),
            2 => format!("+4940{}{}", rng.u8(2..10), d(rng, 7)),
            // 015x mobile blocks take eight digits after the block, 016x/017x seven or eight.
            3 => format!(
                "+4915{}{}",
                ["1", "2", "5", "7", "9"][rng.usize(..5)],
                d(rng, 8)
            ),
            _ => {
                let block = ["160", "170", "171", "172", "175", "176", "177"][rng.usize(..7)];
                let len = 7 + usize::from(rng.bool());
                format!("+49{block}{}", d(rng, len))
            }
        },
        Country::ES => match rng.u8(0..5) {
            0 => format!("+3491{}{}", rng.u8(1..10), d(rng, 6)),
            1 => format!("+3493{}{}", rng.u8(1..10), d(rng, 6)),
            2 => format!("+3496{}{}", rng.u8(1..10), d(rng, 6)),
            _ => format!("+346{}", d(rng, 8)),
        },
        Country::AU => match rng.u8(0..5) {
            // Local numbers start 3-9 (avoiding ACMA's 5550 and 7010 fiction ranges).
            0 => format!("+612{}{}", [8, 9, 4, 6][rng.usize(..4)], d(rng, 7)),
            1 => format!("+613{}{}", [8, 9, 4, 6][rng.usize(..4)], d(rng, 7)),
            2 => format!("+617{}{}", [3, 4, 5][rng.usize(..3)], d(rng, 7)),
            // Mobile blocks ACMA has allocated (04 numbers: 04 + block + six digits).
            _ => {
                const BLOCKS: [&str; 24] = [
                    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12",
                    "13", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23",
                ];
                let b = BLOCKS[rng.usize(..BLOCKS.len())];
                format!("+614{b}{}", d(rng, 6))
            }
        },
    }
}

/// A number of another country, for international calls.
fn foreign(rng: &mut Rng, home: Country) -> String {
    let d = |rng: &mut Rng, k: usize| -> String {
        (0..k).map(|_| char::from(b'0' + rng.u8(0..10))).collect()
    };
    loop {
        let s = match rng.u8(0..9) {
            0 => format!("+331{}{}", rng.u8(4..8), d(rng, 7)),
            1 => format!("+336{}", d(rng, 8)),
            2 => format!("+9198{}", d(rng, 8)),
            3 => format!("+5255{}{}", rng.u8(1..10), d(rng, 7)),
            4 => format!("+813{}{}", rng.u8(3..7), d(rng, 7)),
            5 => format!("+3906{}", d(rng, 8)),
            6 => format!("+649{}{}", rng.u8(3..5), d(rng, 6)),
            7 => {
                let c = Country::ALL[rng.usize(2..6)];
                subscriber(rng, c)
            }
            _ => {
                let c = Country::ALL[rng.usize(..2)];
                subscriber(rng, c)
            }
        };
        // NANP numbers are domestic to each other; the home country's own numbers are not
        // international traffic.
        let nanp = matches!(home, Country::US | Country::CA) && s.starts_with("+1");
        if !nanp && !s.starts_with(&format!("+{}", home.cc())) {
            return s;
        }
    }
}

impl Gen<'_> {
    fn number(&mut self) -> String {
        subscriber(&mut self.rng, self.country)
    }

    fn at(&mut self) -> u64 {
        self.rng.u64(0..self.dur_ms)
    }

    /// Carried as E.164 most of the time, in national format otherwise (as many trunks do).
    fn carried(&mut self, e164: &str) -> String {
        if self.rng.u8(0..10) < 3 {
            self.country.national(e164)
        } else {
            e164.to_string()
        }
    }

    fn ordinary_callee(&mut self) -> Callee {
        if self.rng.u8(0..10) < 8 {
            Callee::Answers {
                ring_ms: self.rng.u64(1_000..5_000),
                talk_ms: self.rng.u64(8_000..40_000),
            }
        } else {
            Callee::NoAnswer {
                cancel_ms: self.rng.u64(9_000..15_000),
            }
        }
    }

    fn scam_callee(&mut self) -> Callee {
        match self.rng.u8(0..10) {
            0..=3 => Callee::Answers {
                ring_ms: self.rng.u64(1_000..5_000),
                talk_ms: self.rng.u64(5_000..40_000),
            },
            _ => Callee::NoAnswer {
                cancel_ms: self.rng.u64(8_000..14_000),
            },
        }
    }

    /// Domestic legitimate traffic: through the core, attested where the country signs calls,
    /// with a tenth from a legacy interconnect that cannot sign.
    fn legit_ingress(&mut self) -> (Ingress, bool) {
        if self.rng.u8(0..10) == 0 {
            (Ingress::Legacy, false)
        } else {
            (Ingress::Core, self.country.signs_calls())
        }
    }

    /// Scam traffic: domestic VoIP resellers (unattested, or C), some from abroad.
    fn scam_ingress(&mut self) -> (Ingress, bool) {
        match self.rng.u8(0..10) {
            0..=5 => (Ingress::Core, false),
            6..=7 => (Ingress::Legacy, false),
            _ => (Ingress::Gateway, false),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        class: Class,
        at_ms: u64,
        caller: String,
        callee: String,
        display: Option<String>,
        ingress: (Ingress, bool),
        callee_does: Callee,
    ) {
        self.calls.push(Call {
            class,
            country: self.country,
            at_ms,
            caller,
            callee,
            display,
            withheld: false,
            ingress: ingress.0,
            attested: ingress.1,
            callee_does,
        });
    }
}

/// Campaign blocks: a few 1000-blocks that a call centre rents numbers from. Several of each
/// block's numbers are on the consortium list; the rest rotate in.
struct Campaign {
    name: String,
    /// The number minus its last three digits.
    block: String,
    listed: Vec<String>,
}

fn campaigns(g: &mut Gen<'_>) -> Vec<Campaign> {
    (0..3)
        .map(|i| {
            let base = g.number();
            let block = base[..base.len() - 3].to_string();
            // Listed numbers cluster in one to three 100-blocks of the 1000-block, as rented DID
            // ranges do; how many of them partners have listed varies by campaign.
            let hundreds: Vec<u8> = (0..g.rng.usize(1..4)).map(|_| g.rng.u8(0..10)).collect();
            let count = g.rng.usize(3..9);
            let mut listed = Vec::new();
            while listed.len() < count {
                let h = hundreds[listed.len() % hundreds.len()];
                let n = format!("{block}{h}{:02}", g.rng.u8(0..100));
                if !listed.contains(&n) {
                    listed.push(n);
                }
            }
            Campaign {
                name: format!("{}-campaign-{i}", g.country.code().to_lowercase()),
                block,
                listed,
            }
        })
        .collect()
}

/// Display names that claim brands, per country, with the look-alike spellings scam call
/// centres use (digits for letters, Cyrillic and Greek homoglyphs, full-width letters).
fn brand_names(country: Country) -> &'static [&'static str] {
    match country {
        Country::US => &[
            "Microsoft Support",
            "Micros0ft Tech Dept",
            "Windows Support",
            "Amaz0n Refunds",
            "\u{410}mazon Security",
            "Apple Support",
            "iCloud Security",
            "Chase Fraud Dept",
            "Wells Fargo Security",
            "Bank of America Alert",
            "PayPal Billing",
            "\u{3a1}ayPal Refund",
            "IRS Tax Dept",
            "Social Security Admin",
            "USPS Delivery",
            "FedEx Customs",
            "AT&T Billing",
            "Verizon Support",
            "FBI Cyber Division",
            "Norton Renewal",
        ],
        Country::CA => &[
            "Microsoft Canada",
            "CRA Revenue Agency",
            "Canada Revenue",
            "RBC Fraud",
            "TD Bank Security",
            "Scotiabank Alert",
            "Bell Canada Billing",
            "Rogers Support",
            "Canada Post Delivery",
            "RCMP Officer",
            "Amaz0n Canada",
            "Interac Fraud",
            "\u{ff2d}\u{ff49}\u{ff43}\u{ff52}\u{ff4f}\u{ff53}\u{ff4f}\u{ff46}\u{ff54}",
        ],
        Country::GB => &[
            "HMRC Tax",
            "HMRC",
            "Barclays Fraud",
            "HSBC Security",
            "Lloyds Bank",
            "NatWest Fraud Team",
            "BT Openreach",
            "Royal Mail",
            "Action Fraud",
            "Metropolitan Police",
            "Micr0soft Support",
            "Amazon Prime",
            "Santander Fraud",
            "Halifax Security",
            "Sky Billing",
        ],
        Country::DE => &[
            "Microsoft Kundendienst",
            "Sparkasse Sicherheit",
            "Deutsche Bank",
            "Commerzbank Betrug",
            "Telekom Service",
            "DHL Paket",
            "Polizei",
            "Finanzamt",
            "BKA Bundeskriminalamt",
            "Amaz0n Kundenservice",
            "PayPal Sicherheit",
            "Volksbank Sicherheit",
        ],
        Country::ES => &[
            "Soporte Microsoft",
            "Santander Seguridad",
            "BBVA Fraude",
            "CaixaBank",
            "Movistar",
            "Correos Envio",
            "Agencia Tributaria",
            "Policia Nacional",
            "Hacienda Reembolso",
            "Amaz0n Espana",
            "Bizum Seguridad",
        ],
        Country::AU => &[
            "ATO Tax Office",
            "Commonwealth Bank",
            "Westpac Fraud",
            "NAB Security",
            "ANZ Fraud Team",
            "Telstra Support",
            "NBN Co",
            "Australia Post",
            "AFP Police",
            "Services Australia",
            "Micros0ft Support",
            "Amazon AU Refunds",
        ],
    }
}

/// Names of people and shops that contain a brand word, or a fragment of one, and are not the
/// brand: a surname, a fruit shop, a window fitter, a restaurant.
fn innocent_names(country: Country) -> &'static [&'static str] {
    match country {
        Country::US | Country::CA => &[
            "Sarah Chase",
            "John Appleton",
            "Apple Tree Nursery",
            "Windows & Doors Ltd",
            "Amazonas Grill",
            "Post Road Dental",
            "Rogers Plumbing",
            "Bell Family",
            "Orange County Realty",
            "Target Fitness",
            "Citizens Advice",
            "Capital Dental",
            "Mike Chase",
            "Applebee's",
            "Frontier Pizza",
        ],
        Country::GB => &[
            "Chase Farm Hospital",
            "Three Bridges Surgery",
            "Sky Blue Cafe",
            "Apple Fruit Market",
            "Windows & Doors Ltd",
            "Citizens Advice",
            "Royal Oak Pub",
            "Lloyd Jones",
            "Halifax Taxis",
            "Barclay Smith",
            "Post Office Cafe",
            "Virgin Hair Studio",
        ],
        Country::DE => &[
            "Klaus Post",
            "Apfelhof Meier",
            "Fenster Windows GmbH",
            "Amazonas Restaurant",
            "Thomas Telekamp",
            "Postbank Filiale Kiel",
            "Deutsche Eiche Gasthof",
            "Volksbad Bochum",
            "Apotheke am Sparkassenplatz",
            "Polizeisportverein",
        ],
        Country::ES => &[
            "Hacienda El Olivo",
            "Eva Santander",
            "Correos Bar",
            "Naranja Fruteria",
            "Bar Movida",
            "Maria Bilbao",
            "Restaurante La Caixa",
            "Taller Orange",
            "Pedro Correa",
        ],
        Country::AU => &[
            "Telstra St Bakery",
            "Apple Isle Tours",
            "Optus Park Cafe",
            "Commonwealth Games Club",
            "Windows & Doors Pty",
            "Amazon Lily Florist",
            "Post Office Hotel",
            "Westpac Stadium Tours",
            "Anzac Day Club",
        ],
    }
}

/// Published inbound-only numbers (customer-service and helplines) whose owners say they do
/// not call out, per country, as E.164. Sources: each organisation's contact page.
fn inbound_only(country: Country) -> &'static [&'static str] {
    match country {
        // Microsoft 1-800-642-7676, Amazon 1-888-280-4331, Apple 1-800-275-2273, IRS
        // 1-800-829-1040, SSA 1-800-772-1213, PayPal 1-888-221-1161, USPS 1-800-275-8777.
        Country::US => &[
            "+18006427676",
            "+18882804331",
            "+18002752273",
            "+18008291040",
            "+18007721213",
            "+18882211161",
            "+18002758777",
        ],
        // CRA individual enquiries 1-800-959-8281, Canada Post 1-866-607-6301, Service Canada
        // 1-800-622-6232.
        Country::CA => &["+18009598281", "+18666076301", "+18006226232"],
        // HMRC self assessment 0300 200 3310, HMRC income tax 0300 200 3300, Action Fraud 0300
        // 123 2040, DVLA 0300 790 6801.
        Country::GB => &[
            "+443002003310",
            "+443002003300",
            "+443001232040",
            "+443007906801",
        ],
        // Bundeszentralamt fuer Steuern 0228 406-0, Deutsche Rentenversicherung 0800 1000 4800.
        Country::DE => &["+492284060", "+4980010004800"],
        // Agencia Tributaria information lines 91 554 87 70 and 901 33 55 33.
        Country::ES => &["+34915548770", "+34901335533"],
        // ATO 13 28 61, Services Australia (Centrelink employment) 13 28 50, ACCC 1300 302 502.
        Country::AU => &["+61132861", "+61132850", "+611300302502"],
    }
}

/// Invalid caller ids for a country: emergency numbers, short codes, wrong lengths and
/// unallocated ranges, as call centres' dialers are seen to send them.
fn invalid_ids(g: &mut Gen<'_>) -> Vec<String> {
    let c = g.country;
    let good = g.number();
    let mut out: Vec<String> = c.emergency().iter().map(|s| s.to_string()).collect();
    out.push(format!("+{}{}", c.cc(), c.emergency()[0]));
    // Wrong length: one digit dropped, two digits added.
    out.push(good[..good.len() - 1].to_string());
    out.push(format!("{good}42"));
    // Short codes and unallocated ranges.
    match c {
        Country::US | Country::CA => {
            out.push("411".into());
            out.push(format!("+1099{}", &good[5..]));
            out.push(format!("+1911{}", &good[5..]));
            out.push("0".into());
        }
        Country::GB => {
            out.push("101".into());
            out.push(format!("+4404{}", &good[5..]));
            out.push(format!("+4406{}", &good[5..]));
        }
        Country::DE => {
            out.push("116116".into());
            out.push(format!("+4901{}", &good[5..]));
            out.push("+49110".into());
        }
        Country::ES => {
            out.push("016".into());
            out.push(format!("+340{}", &good[4..]));
            out.push(format!("+342{}", &good[4..]));
        }
        Country::AU => {
            out.push("1223".into());
            out.push(format!("+610{}", &good[4..]));
            out.push(format!("+616{}", &good[4..]));
        }
    }
    out
}

/// One country's labelled day.
pub fn day(country: Country, shape: &Shape) -> Day {
    let seed = shape.seed ^ (country as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut g = Gen {
        rng: Rng::with_seed(seed),
        country,
        shape,
        dur_ms: shape.duration_s * 1000,
        calls: Vec::new(),
    };
    let camps = campaigns(&mut g);
    let consortium: Vec<Listed> = camps
        .iter()
        .flat_map(|c| {
            c.listed.iter().enumerate().map(|(i, n)| Listed {
                number: n.clone(),
                block: i % 3 != 0,
                campaign: c.name.clone(),
            })
        })
        .collect();

    scams(&mut g, &camps);
    legit(&mut g, &camps);
    let mut calls = g.calls;
    let t = |ms: u64| (ms as f64 * shape.time_scale) as u64;
    for c in &mut calls {
        c.callee_does = match c.callee_does {
            Callee::Answers { ring_ms, talk_ms } => Callee::Answers {
                ring_ms: t(ring_ms),
                talk_ms: t(talk_ms),
            },
            Callee::NoAnswer { cancel_ms } => Callee::NoAnswer {
                cancel_ms: t(cancel_ms),
            },
            Callee::Unwanted { ring_ms } => Callee::Unwanted {
                ring_ms: t(ring_ms),
            },
        };
    }
    calls.sort_by_key(|c| c.at_ms);
    Day {
        country,
        calls,
        consortium,
        duration_ms: g.dur_ms,
    }
}

fn scams(g: &mut Gen<'_>, camps: &[Campaign]) {
    let shape = *g.shape;
    for _ in 0..n(&shape, 20) {
        let c = &camps[g.rng.usize(..camps.len())];
        let caller = c.listed[g.rng.usize(..c.listed.len())].clone();
        let (at, callee, ing, does) = (g.at(), g.number(), g.scam_ingress(), g.scam_callee());
        let caller = g.carried(&caller);
        g.push(Class::Listed, at, caller, callee, None, ing, does);
    }
    for i in 0..n(&shape, 20) {
        let c = &camps[g.rng.usize(..camps.len())];
        // Half inside a listed 100-block, half elsewhere in the 1000-block.
        let caller = loop {
            let tail = if i % 2 == 0 {
                let l = &c.listed[g.rng.usize(..c.listed.len())];
                format!("{}{:02}", &l[l.len() - 3..l.len() - 2], g.rng.u8(0..100))
            } else {
                format!("{:03}", g.rng.u16(0..1000))
            };
            let n = format!("{}{tail}", c.block);
            if !c.listed.contains(&n) {
                break n;
            }
        };
        let (at, callee, ing, does) = (g.at(), g.number(), g.scam_ingress(), g.scam_callee());
        g.push(Class::Rotated, at, caller, callee, None, ing, does);
    }
    for _ in 0..n(&shape, 15) {
        let callee = g.number();
        let caller = format!("{}{:04}", &callee[..callee.len() - 4], g.rng.u16(0..10_000));
        let (at, ing, does) = (g.at(), g.scam_ingress(), g.scam_callee());
        g.push(Class::NeighbourSpoof, at, caller, callee, None, ing, does);
    }
    for _ in 0..n(&shape, 5) {
        let callee = g.number();
        let caller = g.carried(&callee);
        let (at, ing, does) = (g.at(), g.scam_ingress(), g.scam_callee());
        g.push(Class::OwnNumber, at, caller, callee, None, ing, does);
    }
    let names = brand_names(g.country);
    for _ in 0..n(&shape, 20) {
        let name = names[g.rng.usize(..names.len())].to_string();
        let (at, caller, callee, mut ing, does) = (
            g.at(),
            g.number(),
            g.number(),
            g.scam_ingress(),
            g.scam_callee(),
        );
        // Where calls are signed, a fifth come from numbers the call centre registered itself,
        // which its carrier attests A: attestation alone must not excuse a brand claim.
        if g.country.signs_calls() && g.rng.u8(0..5) == 0 {
            ing = (Ingress::Core, true);
        }
        g.push(Class::Brand, at, caller, callee, Some(name), ing, does);
    }
    let dno = inbound_only(g.country);
    for _ in 0..n(&shape, 10) {
        let caller = dno[g.rng.usize(..dno.len())].to_string();
        let (at, callee, ing, does) = (g.at(), g.number(), g.scam_ingress(), g.scam_callee());
        g.push(Class::DnoSpoof, at, caller, callee, None, ing, does);
    }
    let invalid = invalid_ids(g);
    for _ in 0..n(&shape, 10) {
        let caller = invalid[g.rng.usize(..invalid.len())].clone();
        let (at, callee, ing, does) = (g.at(), g.number(), g.scam_ingress(), g.scam_callee());
        g.push(Class::InvalidId, at, caller, callee, None, ing, does);
    }
    // Wangiri: one foreign number rings 20 callees for a second or two each, within a minute.
    let wangiri = match g.country {
        Country::US | Country::CA => "+22177",
        Country::GB | Country::DE => "+2162",
        Country::ES | Country::AU => "+3712",
    };
    // Each of these mobile ranges has eight or nine digits: the prefix plus seven.
    let caller = format!("{wangiri}{:07}", g.rng.u32(0..10_000_000));
    let start = g.rng.u64(0..g.dur_ms.saturating_sub(60_000).max(1));
    for i in 0..n(&shape, 20) {
        let at = start + i as u64 * 3_000;
        let callee = g.number();
        let does = Callee::NoAnswer {
            cancel_ms: g.rng.u64(1_000..3_000),
        };
        g.push(
            Class::Wangiri,
            at,
            caller.clone(),
            callee,
            None,
            (Ingress::Gateway, false),
            does,
        );
    }
    // A robocall burst: one number, one call a second to distinct callees, few answered and
    // those hung up within seconds.
    let caller = g.number();
    let start = g.rng.u64(0..g.dur_ms.saturating_sub(40_000).max(1));
    let ing = g.scam_ingress();
    for i in 0..n(&shape, 30) {
        let at = start + i as u64 * 1_000;
        let callee = g.number();
        let does = if g.rng.u8(0..100) < 15 {
            Callee::Answers {
                ring_ms: g.rng.u64(1_000..4_000),
                talk_ms: g.rng.u64(1_000..3_000),
            }
        } else {
            Callee::NoAnswer {
                cancel_ms: g.rng.u64(4_000..8_000),
            }
        };
        g.push(Class::Robocall, at, caller.clone(), callee, None, ing, does);
    }
    // A scam number that callees report: most refuse it with 607.
    let caller = g.number();
    let count = n(&shape, 15);
    let ing = g.scam_ingress();
    for i in 0..count {
        let at = (g.dur_ms / (count as u64 + 1)) * (i as u64 + 1);
        let callee = g.number();
        let does = if g.rng.u8(0..10) < 6 {
            Callee::Unwanted {
                ring_ms: g.rng.u64(1_000..4_000),
            }
        } else {
            g.scam_callee()
        };
        g.push(Class::Reported, at, caller.clone(), callee, None, ing, does);
    }
}

fn legit(g: &mut Gen<'_>, camps: &[Campaign]) {
    let shape = *g.shape;
    for _ in 0..n(&shape, 120) {
        let (at, caller, callee, ing, does) = (
            g.at(),
            g.number(),
            g.number(),
            g.legit_ingress(),
            g.ordinary_callee(),
        );
        let caller = g.carried(&caller);
        g.push(Class::Ordinary, at, caller, callee, None, ing, does);
    }
    for _ in 0..n(&shape, 30) {
        let callee = g.number();
        let keep = if g.rng.bool() { 4 } else { 2 };
        let caller = loop {
            let tail: String = (0..keep)
                .map(|_| char::from(b'0' + g.rng.u8(0..10)))
                .collect();
            let c = format!("{}{tail}", &callee[..callee.len() - keep]);
            if c != callee {
                break c;
            }
        };
        let (at, ing, does) = (g.at(), g.legit_ingress(), g.ordinary_callee());
        g.push(Class::Neighbour, at, caller, callee, None, ing, does);
    }
    let businesses = [
        "Riverside Dental",
        "City Plumbing",
        "Green Garage",
        "Northside Vet",
        "Harbour Insurance",
        "Maple Accountants",
    ];
    for _ in 0..n(&shape, 25) {
        let name = businesses[g.rng.usize(..businesses.len())].to_string();
        let (at, caller, callee, ing, does) = (
            g.at(),
            g.number(),
            g.number(),
            g.legit_ingress(),
            g.ordinary_callee(),
        );
        g.push(Class::Business, at, caller, callee, Some(name), ing, does);
    }
    for _ in 0..n(&shape, 20) {
        let caller = foreign(&mut g.rng, g.country);
        let (at, callee, does) = (g.at(), g.number(), g.ordinary_callee());
        g.push(
            Class::International,
            at,
            caller,
            callee,
            None,
            (Ingress::Gateway, false),
            does,
        );
    }
    // An appointment-reminder line: about a dozen patients a minute, all day (the whole run).
    let caller = g.number();
    let ing = (Ingress::Core, g.country.signs_calls());
    let per_min = 12u64;
    let count = (g.dur_ms / 60_000 * per_min).max(n(&shape, 12) as u64);
    for i in 0..count {
        let at = i * g.dur_ms / count;
        let callee = g.number();
        let does = if g.rng.u8(0..10) < 7 {
            Callee::Answers {
                ring_ms: g.rng.u64(2_000..8_000),
                talk_ms: g.rng.u64(10_000..30_000),
            }
        } else {
            Callee::NoAnswer {
                cancel_ms: g.rng.u64(20_000..25_000),
            }
        };
        g.push(
            Class::HighVolume,
            at,
            caller.clone(),
            callee,
            Some("Riverside Medical".into()),
            ing,
            does,
        );
    }
    let names = innocent_names(g.country);
    for _ in 0..n(&shape, 20) {
        let name = names[g.rng.usize(..names.len())].to_string();
        let (at, caller, callee, ing, does) = (
            g.at(),
            g.number(),
            g.number(),
            g.legit_ingress(),
            g.ordinary_callee(),
        );
        g.push(
            Class::InnocentName,
            at,
            caller,
            callee,
            Some(name),
            ing,
            does,
        );
    }
    for _ in 0..n(&shape, 10) {
        let c = &camps[g.rng.usize(..camps.len())];
        let used: Vec<u8> = c.listed.iter().map(|l| l.as_bytes()[l.len() - 3]).collect();
        let caller = loop {
            let h = g.rng.u8(0..10);
            if !used.contains(&(b'0' + h)) {
                break format!("{}{h}{:02}", c.block, g.rng.u8(0..100));
            }
            if used.len() >= 10 {
                break format!("{}{:03}", c.block, g.rng.u16(0..1000));
            }
        };
        if c.listed.contains(&caller) {
            continue;
        }
        let (at, callee, ing, does) = (g.at(), g.number(), g.legit_ingress(), g.ordinary_callee());
        g.push(Class::BlockNeighbour, at, caller, callee, None, ing, does);
    }
    // A brand's own team calling its customers from the brand's own, attested number. Only
    // where calls are signed: elsewhere nothing on the wire tells the brand from an impostor
    // except a registry entry, which the generator must not assume.
    if g.country.signs_calls() {
        for name in brand_genuine(g.country) {
            let number = g.number();
            for _ in 0..n(&shape, 4) {
                let (at, callee, does) = (g.at(), g.number(), g.ordinary_callee());
                g.push(
                    Class::BrandGenuine,
                    at,
                    number.clone(),
                    callee,
                    Some(name.to_string()),
                    (Ingress::Core, true),
                    does,
                );
            }
        }
    }
    for _ in 0..n(&shape, 15) {
        let (at, caller, callee, ing, does) = (
            g.at(),
            g.number(),
            g.number(),
            g.legit_ingress(),
            g.ordinary_callee(),
        );
        let len = g.calls.len();
        g.push(Class::Withheld, at, caller, callee, None, ing, does);
        g.calls[len].withheld = true;
    }
    for i in 0..n(&shape, 4) {
        let e = g.country.emergency();
        let callee = e[i % e.len()].to_string();
        // Half of them from a listed number: the emergency override must beat the list.
        let caller = if i % 2 == 0 {
            camps[0].listed[0].clone()
        } else {
            g.number()
        };
        let (at, ing) = (g.at(), g.legit_ingress());
        g.push(
            Class::Emergency,
            at,
            caller,
            callee,
            None,
            ing,
            Callee::Answers {
                ring_ms: 500,
                talk_ms: 5_000,
            },
        );
    }
}

/// Brands that call their own customers (fraud teams, delivery, appointment lines): the
/// display names they send.
fn brand_genuine(country: Country) -> &'static [&'static str] {
    match country {
        Country::US => &["Chase Fraud Dept", "Wells Fargo", "FedEx Delivery"],
        Country::CA => &["RBC Fraud", "Canada Post", "TD Bank"],
        _ => &[],
    }
}
